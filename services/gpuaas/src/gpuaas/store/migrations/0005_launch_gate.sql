-- The launch gate (docs/gpuaas.md): gpuaas's own projection of registry's releases and of the
-- tenants' trusted publisher keys (registry owns both; gpuaas never calls it), each project's
-- launch policy, and the bundle an allocation runs.

-- One row per published version: the latest registry.release.v1 event (highest sequence).
CREATE TABLE releases (
    version_id      uuid PRIMARY KEY,
    tenant_id       uuid        NOT NULL,  -- 00000000-...: the platform-public namespace
    project_id      uuid,                  -- NULL in the platform-public namespace
    app             text        NOT NULL,
    version         text        NOT NULL,
    manifest_digest text        NOT NULL CHECK (manifest_digest ~ '^sha256:[0-9a-f]{64}$'),
    channels        text[]      NOT NULL,
    yanked          boolean     NOT NULL,
    -- the release statements' DSSE envelopes (JSON), as registry stored them
    envelopes       text[]      NOT NULL,
    -- channel -> signer threshold of the policy that promoted the version to it, merged
    -- from every promotion event seen (an older event still contributes its channel)
    thresholds      jsonb       NOT NULL DEFAULT '{}',
    sequence        integer     NOT NULL CHECK (sequence >= 1),
    occurred_at     timestamptz NOT NULL
);
CREATE UNIQUE INDEX releases_by_name ON releases (tenant_id, app, version);

-- The tenants' publisher keys: the furthest status seen (active < rotated < revoked: a
-- revocation is never undone by a late event) and the latest trust expiry.
CREATE TABLE publisher_keys (
    tenant_id    uuid        NOT NULL,
    key_id       text        NOT NULL CHECK (key_id ~ '^sha256:[0-9a-f]{64}$'),
    public_key   bytea       NOT NULL CHECK (length(public_key) = 32),
    status       text        NOT NULL CHECK (status IN ('active', 'rotated', 'revoked')),
    expires_at   timestamptz,
    -- when the event that set expires_at happened: an older one never overwrites it
    expiry_as_of timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key_id)
);

-- What a project's launches must satisfy: the channel a named bundle must be promoted to,
-- and whether a launch must name a bundle at all. No row: stable, and bundles optional.
CREATE TABLE launch_policies (
    project_id       uuid PRIMARY KEY,
    tenant_id        uuid        NOT NULL,
    required_channel text        NOT NULL CHECK (required_channel IN ('dev', 'staging', 'stable')),
    require_bundle   boolean     NOT NULL,
    updated_by       text        NOT NULL,
    updated_at       timestamptz NOT NULL
);

-- The bundle an allocation runs (all NULL: the node's configured workload), and, while it is
-- live, why its release no longer passes the gate (yanked, revoked, ...), reported not acted on.
ALTER TABLE allocations
    ADD COLUMN bundle_tenant_id uuid,
    ADD COLUMN bundle_app       text,
    ADD COLUMN bundle_version   text,
    ADD COLUMN bundle_digest    text,
    ADD COLUMN bundle_channel   text,
    ADD COLUMN bundle_withdrawn text,
    ADD CONSTRAINT allocations_bundle_whole CHECK (
        (bundle_digest IS NULL) = (bundle_app IS NULL)
        AND (bundle_digest IS NULL) = (bundle_version IS NULL)
        AND (bundle_digest IS NULL) = (bundle_tenant_id IS NULL)
        AND (bundle_digest IS NULL) = (bundle_channel IS NULL)
    );
CREATE INDEX allocations_live_bundle ON allocations (bundle_tenant_id, bundle_app, bundle_version)
    WHERE bundle_digest IS NOT NULL AND state NOT IN ('rejected', 'released');
