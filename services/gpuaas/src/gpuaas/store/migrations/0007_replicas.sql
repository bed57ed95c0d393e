-- App replicas (issue 14, docs/gpuaas.md "App replicas"): an allocation appplatform's
-- controller asked for names its replica (the command's idempotency key: one allocation per
-- replica id) and instance, keeps the runtime the node agent runs the bundle with (command,
-- env, ports, probe: the replica command's, as JSON), and the workload's readiness as its
-- node last reported it (not a state: the allocation stays running).
ALTER TABLE allocations
    ADD COLUMN replica_id       uuid UNIQUE,
    ADD COLUMN instance_id      uuid,
    ADD COLUMN runtime          jsonb,
    ADD COLUMN readiness        text CHECK (readiness IN ('starting', 'ready', 'unready')),
    ADD COLUMN readiness_reason text,
    ADD CONSTRAINT allocations_replica_whole CHECK ((replica_id IS NULL) = (instance_id IS NULL));
