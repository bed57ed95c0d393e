-- Capacity generations: how a scheduler replica keeps its in-memory placement index
-- current without re-reading the fleet on every request.
--
-- Every transaction that changes placeable capacity of a SKU (a booking, a release that
-- frees slices, a node entering or leaving `ready`, a GPU registered) bumps that SKU's
-- counter and stamps the new value on the GPUs it touched. The counter's row lock makes
-- those transactions commit in generation order, so a replica that last saw generation G
-- and now reads G' needs exactly the GPUs stamped > G to be current again.
CREATE TABLE capacity_generations (
    sku        text   PRIMARY KEY REFERENCES skus (key),
    generation bigint NOT NULL DEFAULT 0
);
INSERT INTO capacity_generations (sku) SELECT key FROM skus;

ALTER TABLE gpus ADD COLUMN generation bigint NOT NULL DEFAULT 0;
CREATE INDEX gpus_sku_generation ON gpus (sku, generation);

-- A node's live instances, read when a replica reloads that node into its index.
CREATE INDEX allocation_instances_live_gpu ON allocation_instances (gpu_id)
    WHERE released_at IS NULL;
