-- Idle stop (architecture.md §4, running -> releasing): an optional per-allocation policy
-- and the last activity the node reported (initialised when the allocation starts running).
ALTER TABLE allocations
    ADD COLUMN idle_stop_after_s integer CHECK (idle_stop_after_s BETWEEN 60 AND 2592000),
    ADD COLUMN last_active_at    timestamptz;

-- The idle sweep reads only running allocations that have a policy.
CREATE INDEX allocations_idle_running ON allocations (last_active_at)
    WHERE state = 'running' AND idle_stop_after_s IS NOT NULL;
