-- gpuaas: SKUs, nodes, GPUs, allocations, booked instances, slices, quotas, balance standing.

-- The GPU models gpuaas offers (seeded from the GPU catalog).
CREATE TABLE skus (
    key          text PRIMARY KEY,
    name         text    NOT NULL,
    memory_gb    integer NOT NULL,
    mig_capable  boolean NOT NULL
);
-- The GPU catalog's SKUs (libs/contracts, gpucloud_contracts/gpus.py); checked against it by
-- `tools/contracts/generate.py --check`.
INSERT INTO skus (key, name, memory_gb, mig_capable) VALUES
    ('a100-40gb', 'NVIDIA A100 40GB', 40, true),
    ('a100-80gb', 'NVIDIA A100 80GB', 80, true),
    ('h100-80gb', 'NVIDIA H100 80GB', 80, true),
    ('h200-141gb', 'NVIDIA H200 141GB', 141, true);

-- GPU nodes: registered by their agent, state moved by syncs, operators and the sweeper.
CREATE TABLE nodes (
    id                uuid PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    provider          text NOT NULL CHECK (provider IN ('static', 'simulated-cloud')),
    state             text NOT NULL CHECK (state IN
                        ('registering', 'ready', 'cordoned', 'draining', 'offline', 'retired')),
    -- sha256 of the node credential issued at registration; the secret itself is never stored.
    credential_hash   text NOT NULL,
    agent_url         text,
    registered_at     timestamptz NOT NULL,
    last_heartbeat_at timestamptz NOT NULL,
    observed          jsonb NOT NULL DEFAULT '{}'::jsonb
);

-- The GPUs of each node, as its agent registered them.
CREATE TABLE gpus (
    id          uuid PRIMARY KEY,
    node_id     uuid    NOT NULL REFERENCES nodes (id),
    index       integer NOT NULL CHECK (index BETWEEN 0 AND 63),
    sku         text    NOT NULL REFERENCES skus (key),
    device_uuid text    NOT NULL,
    UNIQUE (node_id, index)
);

-- Allocations and their lifecycle (domain/allocations.py), written by the allocation use
-- cases, node syncs, the balance projection and the sweeper.
CREATE TABLE allocations (
    id               uuid PRIMARY KEY,
    tenant_id        uuid        NOT NULL,
    project_id       uuid        NOT NULL,
    sku              text        NOT NULL REFERENCES skus (key),
    mig_profile      text,
    count            integer     NOT NULL CHECK (count BETWEEN 1 AND 64),
    state            text        NOT NULL CHECK (state IN ('requested', 'rejected', 'scheduled',
                        'provisioning', 'running', 'failed', 'releasing', 'released',
                        'release_failed')),
    reason           text,
    node_id          uuid REFERENCES nodes (id),
    units            integer     NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    running_since    timestamptz,
    usage_cursor     timestamptz,
    usage_sequence   integer     NOT NULL DEFAULT 0,
    release_attempts integer     NOT NULL DEFAULT 0,
    next_release_at  timestamptz
);
CREATE INDEX allocations_project ON allocations (project_id, id);
CREATE INDEX allocations_tenant_live ON allocations (tenant_id)
    WHERE state NOT IN ('rejected', 'released');
CREATE INDEX allocations_node_live ON allocations (node_id)
    WHERE state NOT IN ('rejected', 'released');

-- One row per booked instance (a MIG instance, or a whole GPU when profile_id IS NULL).
CREATE TABLE allocation_instances (
    id              uuid PRIMARY KEY,
    allocation_id   uuid     NOT NULL REFERENCES allocations (id),
    gpu_id          uuid     NOT NULL REFERENCES gpus (id),
    profile_id      smallint,
    start           smallint NOT NULL CHECK (start BETWEEN 0 AND 7),
    memory          smallint NOT NULL CHECK (memory BETWEEN 1 AND 8 AND start + memory <= 8),
    compute         smallint NOT NULL CHECK (compute BETWEEN 1 AND 7),
    media_extension boolean  NOT NULL DEFAULT false,
    released_at     timestamptz
);
CREATE INDEX allocation_instances_allocation ON allocation_instances (allocation_id);
-- At most one live +me instance per GPU, enforced by the database.
CREATE UNIQUE INDEX one_media_extension_per_gpu ON allocation_instances (gpu_id)
    WHERE media_extension AND released_at IS NULL;

-- The double-booking guard: one row per booked (GPU, memory slice). Two schedulers that
-- pick the same slice from the same snapshot cannot both commit; the loser retries.
-- Since every profile's valid starts keep compute <= 7 once memory slices are disjoint,
-- this key also bounds compute per GPU.
CREATE TABLE gpu_slices (
    gpu_id      uuid     NOT NULL REFERENCES gpus (id),
    slice       smallint NOT NULL CHECK (slice BETWEEN 0 AND 7),
    instance_id uuid     NOT NULL REFERENCES allocation_instances (id),
    PRIMARY KEY (gpu_id, slice)
);
CREATE INDEX gpu_slices_instance ON gpu_slices (instance_id);

-- Per-project quota in compute slices (a row appears at a project's first request).
CREATE TABLE quotas (
    project_id           uuid PRIMARY KEY,
    tenant_id            uuid    NOT NULL,
    max_compute_slices   integer NOT NULL CHECK (max_compute_slices >= 0)
);

-- Projection of billing.balance.v1: the newest ledger_sequence wins.
CREATE TABLE balance_standing (
    tenant_id        uuid PRIMARY KEY,
    standing         text    NOT NULL CHECK (standing IN ('ok', 'low', 'exhausted')),
    available_micros bigint  NOT NULL,
    currency         text    NOT NULL,
    ledger_sequence  bigint  NOT NULL,
    as_of            timestamptz NOT NULL
);
