-- SSH public keys of users (issue 13): for `ssh <allocation>@<terminal-gateway>`. A key
-- opens shells for exactly one user: its fingerprint is unique among live keys. Revoked
-- keys stay (revoked_at set) so the event history and a later audit can name them.
CREATE TABLE ssh_keys (
    id          uuid PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES users (id),
    name        text        NOT NULL,
    algorithm   text        NOT NULL CHECK (algorithm IN ('ssh-ed25519', 'ssh-rsa')),
    bits        integer     NOT NULL,
    fingerprint text        NOT NULL,
    public_key  text        NOT NULL,
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE UNIQUE INDEX ssh_keys_live_fingerprint ON ssh_keys (fingerprint) WHERE revoked_at IS NULL;
CREATE INDEX ssh_keys_user ON ssh_keys (user_id, created_at);
