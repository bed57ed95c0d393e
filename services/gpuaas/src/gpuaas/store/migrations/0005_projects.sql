-- The tenants' projects, projected from iam.project.v1 (gpuaas's own copy; iam owns them):
-- a request names a project gpuaas knows in that tenant, or answers 404.
CREATE TABLE projects (
    project_id uuid        PRIMARY KEY,
    tenant_id  uuid        NOT NULL,
    created_at timestamptz NOT NULL
);

-- The tenants' status, projected from iam.tenant.v1 (created: active; suspended). No row:
-- not known to be suspended. A suspended tenant launches nothing new.
CREATE TABLE tenants (
    tenant_id  uuid        PRIMARY KEY,
    status     text        NOT NULL CHECK (status IN ('active', 'suspended')),
    changed_at timestamptz NOT NULL
);

-- Quotas and usage counts are keyed by (tenant, project), never by a project id alone.
ALTER TABLE quotas DROP CONSTRAINT quotas_pkey;
ALTER TABLE quotas ADD PRIMARY KEY (tenant_id, project_id);
DROP INDEX allocations_project;
CREATE INDEX allocations_tenant_project ON allocations (tenant_id, project_id, id);
