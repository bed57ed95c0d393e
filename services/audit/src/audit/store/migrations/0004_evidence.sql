-- Evidence records (docs/audit.md "Evidence"): a check's result about a subject digest (a UAT
-- pass, a security scan, an SBOM, a release check, a deploy's readiness), stored once and
-- never changed. Each is published as audit.evidence.recorded (registry's promotion policy
-- reads them) and recorded as a leaf of the audit log by audit's own log consumer.
-- audit_evidence: one row per evidence record, immutable for the runtime role.
CREATE TABLE audit_evidence (
    id              uuid        PRIMARY KEY,
    tenant_id       uuid        NOT NULL,
    project_id      uuid,
    kind            text        NOT NULL CHECK (kind ~ '^[a-z][a-z0-9-]{0,62}$'),
    subject_digest  text        NOT NULL CHECK (subject_digest ~ '^sha256:[0-9a-f]{64}$'),
    content_digest  text        CHECK (content_digest ~ '^sha256:[0-9a-f]{64}$'),
    uri             text        CHECK (length(uri) BETWEEN 1 AND 2048),
    outcome         text        NOT NULL CHECK (outcome IN ('pass', 'fail')),
    details         jsonb       CHECK (details IS NULL OR jsonb_typeof(details) = 'object'),
    producer        text        NOT NULL,
    producer_kind   text        NOT NULL CHECK (producer_kind IN ('user', 'service_account', 'operator')),
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_evidence_subject ON audit_evidence (subject_digest, tenant_id, recorded_at);
SELECT for_runtime_role('REVOKE UPDATE, DELETE, TRUNCATE ON audit_evidence FROM %I');
