-- The verifiable audit log (issue 15): an RFC 6962 Merkle tree of audit records stored as
-- C2SP tlog-tiles (docs/audit-log.md). Everything here is append-only for the runtime role:
-- it may INSERT and SELECT, never UPDATE, DELETE or TRUNCATE (revoked below where the
-- platform has a separate runtime role, and refused by the triggers for everyone); only
-- `audit_prune` (owned by the owner, SECURITY DEFINER) removes whole tiles past retention.

-- One row per leaf: its index in the fleet tree, the canonical record bytes (the leaf,
-- gpucloud_trust.records) and the columns the reads filter on.
CREATE TABLE audit_leaves (
    idx         bigint      PRIMARY KEY CHECK (idx >= 0),
    event_id    uuid        NOT NULL UNIQUE,
    tenant      text,
    tenant_seq  bigint,
    actor       text        NOT NULL,
    action      text        NOT NULL,
    target_kind text        NOT NULL,
    target_id   text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    leaf        bytea       NOT NULL
);
COMMENT ON TABLE audit_leaves IS 'audit: the leaves of the Merkle audit log (canonical AU-3 records), append-only';
CREATE INDEX audit_leaves_tenant ON audit_leaves (tenant, idx);
CREATE INDEX audit_leaves_actor ON audit_leaves (tenant, actor, idx);
CREATE INDEX audit_leaves_action ON audit_leaves (tenant, action, idx);
CREATE INDEX audit_leaves_target ON audit_leaves (tenant, target_id, idx);

-- Tile versions (level, index, width): a narrower version is a prefix of every wider one,
-- readers take the widest (gpucloud_trust.tiles).
CREATE TABLE audit_tiles (
    level  smallint NOT NULL CHECK (level >= 0),
    idx    bigint   NOT NULL CHECK (idx >= 0),
    width  smallint NOT NULL CHECK (width BETWEEN 1 AND 256),
    hashes bytea    NOT NULL CHECK (length(hashes) = 32 * width),
    PRIMARY KEY (level, idx, width)
);
COMMENT ON TABLE audit_tiles IS 'audit: the stored hashes of the Merkle audit log (C2SP tlog-tiles, height 8), append-only';

-- One row per appended batch: the tree size and root after it. The largest is the tree.
CREATE TABLE audit_tree_heads (
    size        bigint      PRIMARY KEY CHECK (size > 0),
    root        bytea       NOT NULL CHECK (length(root) = 32),
    appended_at timestamptz NOT NULL
);
COMMENT ON TABLE audit_tree_heads IS 'audit: the tree size and root after each appended batch, append-only';

-- Signed checkpoints (C2SP signed note of a tlog-checkpoint), each published on
-- audit.checkpoint.v1 with the consistency proof from the previous one.
CREATE TABLE audit_checkpoints (
    size      bigint      PRIMARY KEY CHECK (size >= 0),
    root      bytea       NOT NULL CHECK (length(root) = 32),
    signed_at timestamptz NOT NULL,
    note      text        NOT NULL
);
COMMENT ON TABLE audit_checkpoints IS 'audit: signed checkpoints of the audit log, append-only';

-- audit's checkpoint signing key (Ed25519), PKCS#8, encrypted under
-- GPUCLOUD_AUDIT_KEY_PASSPHRASE when one is configured (as iam's token signing keys).
CREATE TABLE audit_signing_keys (
    key_name   text        PRIMARY KEY,
    vkey       text        NOT NULL UNIQUE,
    pkcs8      bytea       NOT NULL,
    encrypted  boolean     NOT NULL,
    created_at timestamptz NOT NULL
);
COMMENT ON TABLE audit_signing_keys IS 'audit: the checkpoint signing key (Ed25519, encrypted at rest)';

-- Retention per tenant (days; 400 when a tenant has no row). Mutable policy, not log.
CREATE TABLE audit_retention (
    tenant     text        PRIMARY KEY,
    days       integer     NOT NULL CHECK (days >= 1),
    changed_at timestamptz NOT NULL
);
COMMENT ON TABLE audit_retention IS 'audit: retention policy per tenant (days; default 400)';

-- Each prune: every leaf below min_index and every tile covering only such leaves is gone.
CREATE TABLE audit_prunes (
    min_index  bigint      PRIMARY KEY CHECK (min_index >= 0 AND min_index % 256 = 0),
    checkpoint bigint      NOT NULL,
    pruned_at  timestamptz NOT NULL
);
COMMENT ON TABLE audit_prunes IS 'audit: retention prunes of the audit log (whole tiles below an index), append-only';

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('audit.pruning', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['audit_leaves', 'audit_tiles', 'audit_tree_heads',
                             'audit_checkpoints', 'audit_signing_keys', 'audit_prunes']
    LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW'
                       ' EXECUTE FUNCTION audit_log_append_only()', t || '_append_only', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT'
                       ' EXECUTE FUNCTION audit_log_append_only()', t || '_no_truncate', t);
    END LOOP;
END $$;
CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Retention pruning, the one way anything leaves the log: below `min_index` (a multiple of
-- 256, so whole level-0 tiles), only when a checkpoint covers it, and only leaves whose
-- tenant's retention has passed at `now` (the function checks the policy itself, so the
-- runtime role calling it cannot remove a record still within retention). Tiles go when
-- every leaf they cover lies below min_index (gpucloud_trust.tiles.prunable).
CREATE FUNCTION audit_prune(min_index bigint, now timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    covered bigint;
    removed bigint;
BEGIN
    IF min_index % 256 <> 0 OR min_index <= coalesce((SELECT max(p.min_index) FROM audit_prunes p), 0) THEN
        RAISE EXCEPTION 'prune index % is not a new multiple of 256', min_index;
    END IF;
    SELECT max(size) INTO covered FROM audit_checkpoints;
    IF covered IS NULL OR covered < min_index THEN
        RAISE EXCEPTION 'no checkpoint covers index %', min_index;
    END IF;
    IF EXISTS (SELECT 1 FROM audit_leaves l LEFT JOIN audit_retention r ON r.tenant = l.tenant
               WHERE l.idx < min_index
                 AND l.occurred_at > now - make_interval(days => coalesce(r.days, 400))) THEN
        RAISE EXCEPTION 'records below % are still within retention', min_index;
    END IF;
    PERFORM set_config('audit.pruning', 'on', true);
    DELETE FROM audit_leaves WHERE idx < min_index;
    GET DIAGNOSTICS removed = ROW_COUNT;
    DELETE FROM audit_tiles WHERE (idx + 1) * (256::numeric ^ (level + 1)) <= min_index;
    PERFORM set_config('audit.pruning', 'off', true);
    INSERT INTO audit_prunes (min_index, checkpoint, pruned_at) VALUES (min_index, covered, now);
    RETURN removed;
END $$;

-- Where the platform runs a separate runtime login (platformkit.migrate hands its name over),
-- it gets no UPDATE, DELETE or TRUNCATE on the log.
DO $$
BEGIN
    IF to_regprocedure('for_runtime_role(text)') IS NOT NULL THEN
        PERFORM for_runtime_role('REVOKE UPDATE, DELETE, TRUNCATE ON audit_leaves, audit_tiles,'
            ' audit_tree_heads, audit_checkpoints, audit_signing_keys, audit_prunes,'
            ' audit_records FROM %I');
        PERFORM for_runtime_role('GRANT EXECUTE ON FUNCTION audit_prune(bigint, timestamptz) TO %I');
    END IF;
END $$;
