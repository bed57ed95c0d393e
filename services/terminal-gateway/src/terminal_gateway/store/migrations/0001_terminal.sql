-- terminal-gateway's own database (docs/terminal.md, docs/data-ownership.md).

-- Projections, fed by events (no other service's database is ever read).

-- Projection of gpuaas.allocation.v1: who may open a shell where (tenant, project, node,
-- state); leaving running revokes the allocation's sessions.
CREATE TABLE allocations (
    id          uuid PRIMARY KEY,
    tenant_id   uuid        NOT NULL,
    project_id  uuid        NOT NULL,
    node_id     uuid,
    state       text        NOT NULL,
    updated_at  timestamptz NOT NULL
);
-- Projection of gpuaas.node.v1: each node's name (the session token's audience) and the
-- agent URL the relay connects to.
CREATE TABLE nodes (
    id          uuid PRIMARY KEY,
    name        text        NOT NULL,
    agent_url   text,
    state       text        NOT NULL,
    updated_at  timestamptz NOT NULL
);
-- Projection of iam.tenant.v1: each tenant's status; suspension revokes its sessions.
CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    status      text        NOT NULL,
    updated_at  timestamptz NOT NULL
);
-- Projection of iam.ssh-key.v1: which public key is whose, for `ssh` logins.
CREATE TABLE ssh_keys (
    id          uuid PRIMARY KEY,
    user_id     uuid        NOT NULL,
    fingerprint text        NOT NULL,
    public_key  text        NOT NULL,
    added_at    timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX ssh_keys_live ON ssh_keys (fingerprint) WHERE revoked_at IS NULL;

-- Owned here.

-- Each tenant's terminal policy (PUT .../policy): a second factor required to open or
-- reattach, and the idle timeout.
CREATE TABLE tenant_policies (
    tenant_id      uuid PRIMARY KEY,
    require_mfa    boolean     NOT NULL,
    idle_timeout_s integer CHECK (idle_timeout_s BETWEEN 60 AND 86400),
    updated_at     timestamptz NOT NULL,
    updated_by     uuid
);

-- Terminal sessions (the state machine of domain/sessions.py): who, which allocation and
-- node, the current single-use connect token, the relay's lease, the recording's digest.
CREATE TABLE sessions (
    id               uuid PRIMARY KEY,
    tenant_id        uuid        NOT NULL,
    project_id       uuid        NOT NULL,
    allocation_id    uuid        NOT NULL,
    node_id          uuid        NOT NULL,
    user_id          uuid        NOT NULL,
    via              text        NOT NULL CHECK (via IN ('browser', 'ssh')),
    kind             text        NOT NULL CHECK (kind IN ('shell', 'exec', 'forward')),
    command          text,
    forward_port     integer,
    state            text        NOT NULL
        CHECK (state IN ('minted', 'open', 'detached', 'closed', 'expired', 'revoked')),
    reason           text,
    -- The roles that allowed it; re-checked against iam's membership events while it lives.
    tenant_roles     text[]      NOT NULL,
    project_roles    text[]      NOT NULL,
    client_address   text,
    -- The current single-use connect token (one at a time: a new attach token replaces it).
    token_id         uuid        NOT NULL,
    token_expires_at timestamptz NOT NULL,
    token_used_at    timestamptz,
    grace_s          integer     NOT NULL,
    idle_timeout_s   integer,
    -- Which replica relays it (open sessions) and when it last said so.
    relay_instance   text,
    relay_seen_at    timestamptz,
    -- Set by a revocation while a relay holds the session; the relay ends it.
    revoke_reason    text,
    attachments      integer     NOT NULL DEFAULT 0,
    minted_at        timestamptz NOT NULL,
    opened_at        timestamptz,
    detached_at      timestamptz,
    ended_at         timestamptz,
    updated_at       timestamptz NOT NULL,
    recording_bytes  bigint      NOT NULL DEFAULT 0,
    recording_digest text
);
CREATE INDEX sessions_live_by_allocation ON sessions (allocation_id)
    WHERE state IN ('minted', 'open', 'detached');
CREATE INDEX sessions_live_by_user ON sessions (tenant_id, user_id)
    WHERE state IN ('minted', 'open', 'detached');
CREATE INDEX sessions_by_tenant ON sessions (tenant_id, minted_at DESC);

-- Recordings (asciicast v2) as ordered chunks; the digest on the session is the SHA-256 of
-- their concatenation once final.
CREATE TABLE recording_chunks (
    session_id  uuid        NOT NULL REFERENCES sessions (id),
    seq         integer     NOT NULL,
    data        bytea       NOT NULL,
    written_at  timestamptz NOT NULL,
    PRIMARY KEY (session_id, seq)
);

-- terminal-gateway's own keys: EdDSA signing keys of session tokens (published as JWKS)
-- and the SSH host key, PKCS#8, encrypted with GPUCLOUD_TERMINAL_KEY_PASSPHRASE when set.
CREATE TABLE signing_keys (
    id          text PRIMARY KEY,
    purpose     text        NOT NULL CHECK (purpose IN ('session', 'ssh_host')),
    private_key bytea       NOT NULL,
    encrypted   boolean     NOT NULL,
    created_at  timestamptz NOT NULL,
    retired_at  timestamptz
);
