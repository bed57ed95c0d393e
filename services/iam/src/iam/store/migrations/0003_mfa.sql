-- Second factors. The TOTP secret is stored encrypted (AES-256-GCM under a key derived from
-- GPUCLOUD_IAM_KEY_PASSPHRASE, the user id as associated data) when the passphrase is set;
-- it is returned once at enrollment and never again. Recovery codes (80 random bits each)
-- are stored as SHA-256 digests and used at most once.

-- Users' MFA factors (TOTP secrets, sealed), enrolled then activated.
CREATE TABLE mfa_factors (
    user_id        uuid PRIMARY KEY REFERENCES users (id),
    method         text        NOT NULL CHECK (method IN ('totp')),
    secret         bytea       NOT NULL,
    encrypted      boolean     NOT NULL,
    status         text        NOT NULL CHECK (status IN ('pending', 'active')),
    -- The last TOTP time step accepted: a code is never accepted twice.
    last_step      bigint,
    created_at     timestamptz NOT NULL,
    activated_at   timestamptz
);

-- One-time recovery codes of a user's MFA (hashes).
CREATE TABLE recovery_codes (
    id        uuid PRIMARY KEY,
    user_id   uuid        NOT NULL REFERENCES users (id),
    code_hash bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    used_at   timestamptz,
    UNIQUE (user_id, code_hash)
);

-- A tenant's sign-in policy (no row: the defaults).
CREATE TABLE tenant_policies (
    tenant_id              uuid PRIMARY KEY REFERENCES tenants (id),
    require_mfa_for_admins boolean     NOT NULL,
    updated_at             timestamptz NOT NULL
);
