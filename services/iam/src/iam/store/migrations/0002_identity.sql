-- Users, projects, memberships, signing keys, refresh tokens, service accounts, API keys.
-- Secrets are never stored in the clear: passwords as argon2id hashes, refresh tokens and
-- API keys as SHA-256 of 256-bit random secrets, private signing keys as PKCS#8 (encrypted
-- with GPUCLOUD_IAM_KEY_PASSPHRASE when it is set).

-- Users: email (unique, normalized) and password hash, written by sign-up and registration.
CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text        NOT NULL UNIQUE
                  CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 320),
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL
);

-- Projects of a tenant (slug unique per tenant); sign-up creates the default one.
CREATE TABLE projects (
    id         uuid PRIMARY KEY,
    tenant_id  uuid        NOT NULL REFERENCES tenants (id),
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    slug       text        NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
    created_at timestamptz NOT NULL,
    UNIQUE (tenant_id, slug)
);

-- A role of a user or service account in a tenant (project_id NULL) or in one project.
-- One role per principal and scope: a new grant replaces the old one.
CREATE TABLE memberships (
    id             uuid PRIMARY KEY,
    tenant_id      uuid        NOT NULL REFERENCES tenants (id),
    project_id     uuid        REFERENCES projects (id),
    principal_id   uuid        NOT NULL,
    principal_kind text        NOT NULL CHECK (principal_kind IN ('user', 'service_account')),
    role           text        NOT NULL
                   CHECK (role IN ('owner', 'admin', 'member', 'viewer', 'billing')),
    created_at     timestamptz NOT NULL
);
CREATE UNIQUE INDEX memberships_one_tenant_role
    ON memberships (tenant_id, principal_id) WHERE project_id IS NULL;
CREATE UNIQUE INDEX memberships_one_project_role
    ON memberships (project_id, principal_id) WHERE project_id IS NOT NULL;
CREATE INDEX memberships_by_principal ON memberships (principal_id);

-- iam's token signing keys (encrypted private keys, rotated; published as the JWKS).
CREATE TABLE signing_keys (
    kid           text PRIMARY KEY,
    algorithm     text        NOT NULL CHECK (algorithm IN ('EdDSA')),
    public_jwk    jsonb       NOT NULL,
    private_pkcs8 bytea       NOT NULL,
    encrypted     boolean     NOT NULL,
    status        text        NOT NULL CHECK (status IN ('active', 'retired')),
    created_at    timestamptz NOT NULL,
    retired_at    timestamptz,
    -- A retired key stays in the JWKS until the last token it signed has expired.
    publish_until timestamptz
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((true)) WHERE status = 'active';

-- Refresh tokens by family: rotated on every use, a reused one revokes its family.
CREATE TABLE refresh_tokens (
    id         uuid PRIMARY KEY,
    family_id  uuid        NOT NULL,
    user_id    uuid        NOT NULL REFERENCES users (id),
    tenant_id  uuid        NOT NULL REFERENCES tenants (id),
    token_hash bytea       NOT NULL UNIQUE,
    amr        text[]      NOT NULL,
    auth_time  timestamptz NOT NULL,
    status     text        NOT NULL CHECK (status IN ('active', 'used', 'revoked')),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);

-- Service accounts, one project each.
CREATE TABLE service_accounts (
    id         uuid PRIMARY KEY,
    tenant_id  uuid        NOT NULL REFERENCES tenants (id),
    project_id uuid        NOT NULL REFERENCES projects (id),
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL
);
CREATE INDEX service_accounts_by_project ON service_accounts (project_id);

-- API keys of service accounts (hashes only; revocation is published fleet-wide).
CREATE TABLE api_keys (
    id                 uuid PRIMARY KEY,
    service_account_id uuid        NOT NULL REFERENCES service_accounts (id),
    prefix             text        NOT NULL,
    secret_hash        bytea       NOT NULL,
    created_at         timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    revoked_at         timestamptz
);
CREATE INDEX api_keys_by_service_account ON api_keys (service_account_id);
