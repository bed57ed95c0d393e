-- appplatform's Ed25519 keys for the app-proxy tokens it mints for node agents (published
-- at /v1/apps/.well-known/jwks.json): PKCS#8, encrypted with GPUCLOUD_APPS_KEY_PASSPHRASE
-- when set. Created on first start, shared by every replica; never deleted (retired).
CREATE TABLE signing_keys (
    id text PRIMARY KEY,
    private_key bytea NOT NULL,
    encrypted boolean NOT NULL,
    created_at timestamptz NOT NULL,
    retired_at timestamptz
);
SELECT for_runtime_role('REVOKE DELETE, TRUNCATE ON signing_keys FROM %I');
