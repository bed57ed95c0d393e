-- The tenants' projects, projected from iam.project.v1 (registry's own copy; iam owns them):
-- an app is created only in a project iam made, in the tenant it belongs to.
CREATE TABLE projects (
    project_id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    created_at timestamptz NOT NULL
);
