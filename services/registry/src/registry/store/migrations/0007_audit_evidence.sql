-- registry's projection of audit's evidence records (audit.evidence.v1, inbox consumer): a
-- promotion policy's required evidence kind is met by a passing record of that kind about the
-- bundle's manifest digest, recorded in the app's tenant (docs/registry.md "Promotion and the
-- policy"). Only what the policy reads is kept; audit holds the record itself.
-- audit_evidence: one row per evidence record audit published.
CREATE TABLE audit_evidence (
    evidence_id    uuid        PRIMARY KEY,
    tenant_id      uuid        NOT NULL,
    kind           text        NOT NULL,
    subject_digest text        NOT NULL,
    outcome        text        NOT NULL CHECK (outcome IN ('pass', 'fail')),
    recorded_at    timestamptz NOT NULL
);
CREATE INDEX audit_evidence_subject ON audit_evidence (tenant_id, subject_digest);
