-- Accounts you can trust (issue 10 item 5): email verification and invitations.
-- Tokens are 256-bit random secrets stored as SHA-256 (like refresh tokens); the plaintext
-- exists only in the message sent to the address.

-- A sign-up (a tenant and its owner) or a registration (a user without a tenant) waiting
-- for its email link. Nothing else exists until the link is used: the user, tenant and
-- project rows are written by the verification, in one transaction. The password hash
-- waits here, bound to this link: whoever registers an address they do not read never
-- gets an account from it.
CREATE TABLE email_verifications (
    id            uuid PRIMARY KEY,
    token_hash    bytea       NOT NULL UNIQUE,
    purpose       text        NOT NULL CHECK (purpose IN ('signup', 'register')),
    email         text        NOT NULL CHECK (email = lower(email)),
    password_hash text        NOT NULL,
    tenant_name   text,
    tenant_slug   text,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,
    CHECK ((purpose = 'signup') = (tenant_slug IS NOT NULL))
);
CREATE INDEX email_verifications_by_expiry ON email_verifications (expires_at);

-- A role offered to an email address: it binds to the address's owner when they accept
-- with the token sent to it (pending -> accepted | revoked | expired).
CREATE TABLE invitations (
    id          uuid PRIMARY KEY,
    token_hash  bytea       NOT NULL UNIQUE,
    tenant_id   uuid        NOT NULL REFERENCES tenants (id),
    project_id  uuid        REFERENCES projects (id),
    email       text        NOT NULL CHECK (email = lower(email)),
    role        text        NOT NULL
                CHECK (role IN ('owner', 'admin', 'member', 'viewer', 'billing')),
    invited_by  uuid,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    accepted_at timestamptz,
    accepted_by uuid,
    revoked_at  timestamptz
);
CREATE INDEX invitations_by_tenant ON invitations (tenant_id, created_at);
