-- registry as a witness of the audit log (docs/registry.md "Witness"): every audit
-- checkpoint it received and accepted, and every one it refused with the reason. A reader
-- (`gpucloud audit verify`) compares the checkpoint audit serves with the one registry
-- holds, so audit cannot show one history to registry and another to a tenant unnoticed.
-- witnessed_checkpoints: each audit checkpoint registry verified and kept.
CREATE TABLE witnessed_checkpoints (
    origin        text        NOT NULL,
    size          bigint      NOT NULL CHECK (size >= 0),
    root          bytea       NOT NULL CHECK (length(root) = 32),
    note          text        NOT NULL,
    log_key       text        NOT NULL,
    previous_size bigint,
    proof         text[]      NOT NULL DEFAULT '{}',
    witnessed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (origin, size)
);
-- witness_conflicts: each audit checkpoint registry refused, with the reason (evidence).
CREATE TABLE witness_conflicts (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    origin       text        NOT NULL,
    size         bigint,
    note         text        NOT NULL,
    kind         text        NOT NULL,
    detail       text        NOT NULL,
    seen_at      timestamptz NOT NULL DEFAULT now()
);
-- Evidence: the runtime role adds rows, never changes or removes one.
SELECT for_runtime_role('REVOKE UPDATE, DELETE, TRUNCATE ON witnessed_checkpoints, witness_conflicts FROM %I');
