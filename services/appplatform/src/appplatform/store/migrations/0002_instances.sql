-- App instances: the desired state a project asked for (spec: the release, env, resources,
-- replicas; `generation` grows with each change of it, `spec_generation` is the generation
-- the runtime last changed at) and what the controller observed and decided (state, reason,
-- conditions, observed_generation). The state machine is domain/instance_machine.py.
CREATE TABLE instances (
    instance_id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    project_id uuid NOT NULL,
    name text NOT NULL,
    app_tenant_id uuid NOT NULL,
    app text NOT NULL,
    channel text,
    version text NOT NULL,
    version_id uuid NOT NULL,
    manifest_digest text NOT NULL,
    manifest jsonb NOT NULL,
    env jsonb NOT NULL,
    resources jsonb NOT NULL,
    replicas integer NOT NULL CHECK (replicas BETWEEN 0 AND 16),
    generation integer NOT NULL CHECK (generation >= 1),
    spec_generation integer NOT NULL,
    observed_generation integer NOT NULL DEFAULT 0,
    desired_state text NOT NULL DEFAULT 'running' CHECK (desired_state IN ('running', 'stopped')),
    stop_reason text,
    state text NOT NULL CHECK (state IN ('pending', 'provisioning', 'starting', 'ready',
                                         'degraded', 'stopping', 'stopped', 'failed')),
    reason text,
    ready_replicas integer NOT NULL DEFAULT 0,
    crash_count integer NOT NULL DEFAULT 0,
    conditions jsonb NOT NULL DEFAULT '[]',
    created_by text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
-- A name is unique among the project's live instances (a stopped one's name may be reused).
CREATE UNIQUE INDEX instances_live_name ON instances (project_id, name)
    WHERE state NOT IN ('stopped', 'failed');
CREATE INDEX instances_by_project ON instances (tenant_id, project_id, created_at);
CREATE INDEX instances_live ON instances (updated_at) WHERE state NOT IN ('stopped', 'failed');

-- Every replica the controller asked gpuaas for: recorded in the transaction that writes
-- its `appplatform.replica.requested` command, so a reconcile run again sees it and asks
-- nothing twice. gpuaas takes replica_id as the allocation's idempotency key.
CREATE TABLE replicas (
    replica_id uuid PRIMARY KEY,
    instance_id uuid NOT NULL REFERENCES instances (instance_id),
    slot integer NOT NULL,
    spec_generation integer NOT NULL,
    generation integer NOT NULL,
    state text NOT NULL CHECK (state IN ('requested', 'allocated', 'running', 'ready',
                                         'unready', 'stopping', 'gone')),
    outcome text CHECK (outcome IN ('rejected', 'failed', 'lost', 'stopped')),
    reason text,
    allocation_id uuid,
    node_id uuid,
    unready_since timestamptz,
    requested_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX replicas_by_instance ON replicas (instance_id, slot);
