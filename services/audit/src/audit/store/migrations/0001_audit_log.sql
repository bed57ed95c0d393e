-- Append-only, hash-chained audit log: each record's hash covers the previous record's
-- hash, so an edited or deleted record breaks the chain (GET /v1/audit/records/verify).
CREATE TABLE audit_records (
    seq         bigint      PRIMARY KEY,
    id          uuid        NOT NULL UNIQUE,
    event_id    uuid        NOT NULL UNIQUE,
    event_type  text        NOT NULL,
    source      text        NOT NULL,
    subject     text        NOT NULL,
    tenant      text,
    trace_id    text,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    payload     jsonb       NOT NULL,
    prev_hash   text        NOT NULL,
    hash        text        NOT NULL
);
CREATE INDEX audit_records_tenant ON audit_records (tenant, seq);
CREATE INDEX audit_records_subject ON audit_records (subject, seq);

CREATE FUNCTION audit_records_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only';
END $$;
CREATE TRIGGER audit_records_immutable BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_records_immutable();

-- Status read model fed by every service's heartbeat on platform.heartbeat.v1.
CREATE TABLE service_status (
    service      text        PRIMARY KEY,
    instance     text        NOT NULL,
    version      text        NOT NULL,
    git_sha      text        NOT NULL,
    ready        boolean     NOT NULL,
    checks       jsonb       NOT NULL,
    started_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL
);
