-- appplatform's projections of other families (their events are the only source; never a
-- read of another service's database) and the app catalog built from registry's releases.

-- iam's tenants (iam.tenant.v1): a suspended tenant's instances stop.
CREATE TABLE tenants (
    tenant_id uuid PRIMARY KEY,
    status text NOT NULL CHECK (status IN ('active', 'suspended')),
    updated_at timestamptz NOT NULL
);

-- iam's projects (iam.project.v1): an instance is created only in a project iam made.
CREATE TABLE projects (
    project_id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    created_at timestamptz NOT NULL
);

-- gpuaas's nodes (gpuaas.node.v1): where each node's agent answers (the port proxy, logs).
CREATE TABLE nodes (
    node_id uuid PRIMARY KEY,
    name text NOT NULL,
    agent_url text,
    sku text,
    state text NOT NULL,
    updated_at timestamptz NOT NULL
);

-- registry's releases that carry an app manifest (registry.release.v1), one row per version,
-- kept at the highest `sequence` seen (an older event delivered late changes nothing).
-- `manifest` is the validated manifest; `manifest_error` says why one did not validate (such
-- a release never shows in the catalog and cannot be launched).
CREATE TABLE releases (
    version_id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    app_id uuid NOT NULL,
    app text NOT NULL,
    project_id uuid,
    version text NOT NULL,
    manifest_digest text NOT NULL,
    manifest jsonb,
    manifest_error text,
    description text,
    channels text[] NOT NULL DEFAULT '{}',
    yanked boolean NOT NULL DEFAULT false,
    sequence integer NOT NULL,
    published_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CHECK ((manifest IS NULL) <> (manifest_error IS NULL))
);
CREATE INDEX releases_by_app ON releases (tenant_id, app);
