-- The launch gate (docs/gpuaas.md): gpuaas's own projection of registry's releases and of the
-- tenants' trusted publisher keys (registry owns both; gpuaas never calls it), each project's
-- required channel, and the bundle an allocation runs.

-- One row per published version: the registry.release.v1 event with the highest sequence.
CREATE TABLE releases (
    version_id      uuid PRIMARY KEY,
    tenant_id       uuid        NOT NULL,  -- 00000000-...: the platform-public namespace
    project_id      uuid,                  -- NULL in the platform-public namespace
    app             text        NOT NULL,
    version         text        NOT NULL,
    manifest_digest text        NOT NULL CHECK (manifest_digest ~ '^sha256:[0-9a-f]{64}$'),
    channels        text[]      NOT NULL,
    yanked          boolean     NOT NULL,
    -- the release statements' DSSE envelopes (JSON), byte for byte as registry stored them
    envelopes       text[]      NOT NULL,
    -- channel -> signer threshold of the policy that promoted the version to it, merged from
    -- every promotion event seen (an event older than the row still adds its channel's)
    thresholds      jsonb       NOT NULL DEFAULT '{}',
    sequence        integer     NOT NULL CHECK (sequence >= 1),
    occurred_at     timestamptz NOT NULL
);
CREATE UNIQUE INDEX releases_by_name ON releases (tenant_id, app, version);

-- The tenants' publisher keys: the furthest status seen (active < rotated < revoked: a late
-- event never undoes a revocation) and the trust expiry of the latest event that set it.
CREATE TABLE publisher_keys (
    tenant_id    uuid        NOT NULL,
    key_id       text        NOT NULL CHECK (key_id ~ '^sha256:[0-9a-f]{64}$'),
    public_key   bytea       NOT NULL CHECK (length(public_key) = 32),
    status       text        NOT NULL CHECK (status IN ('active', 'rotated', 'revoked')),
    expires_at   timestamptz,
    expiry_as_of timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key_id)
);

-- The channel a bundle named by a launch in the project must be promoted to. No row: stable.
CREATE TABLE launch_policies (
    project_id       uuid        PRIMARY KEY,
    tenant_id        uuid        NOT NULL,
    required_channel text        NOT NULL CHECK (required_channel IN ('dev', 'staging', 'stable')),
    updated_by       text        NOT NULL,
    updated_at       timestamptz NOT NULL
);

-- The bundle an allocation runs (all NULL: the node's configured workload).
ALTER TABLE allocations
    ADD COLUMN bundle_tenant_id uuid,
    ADD COLUMN bundle_app       text,
    ADD COLUMN bundle_version   text,
    ADD COLUMN bundle_digest    text,
    ADD COLUMN bundle_channel   text,
    ADD CONSTRAINT allocations_bundle_whole CHECK (
        (bundle_digest IS NULL) = (bundle_app IS NULL)
        AND (bundle_digest IS NULL) = (bundle_version IS NULL)
        AND (bundle_digest IS NULL) = (bundle_tenant_id IS NULL)
        AND (bundle_digest IS NULL) = (bundle_channel IS NULL)
    );
