"""registry's projection of audit's evidence records (audit.evidence.v1, inbox consumer).

A promotion policy's required evidence kind is on record when audit holds a passing evidence
record of that kind about the version's manifest digest, recorded in the app's tenant, or
when a signed evidence-reference statement of that kind is attached to the version (the
statement path predates audit's evidence API and stays for publishers that sign their
evidence themselves)."""

from __future__ import annotations

import uuid

import msgspec

from gpucloud_contracts.events.audit import EvidenceRecorded
from platformkit.consumers import Handler
from platformkit.db import UnitOfWork
from platformkit.envelope import CloudEvent


def evidence_handler() -> Handler:
    async def apply_evidence_event(event: CloudEvent, uow: UnitOfWork) -> None:
        evidence = msgspec.json.decode(event.data, type=EvidenceRecorded)
        await uow.execute(
            "INSERT INTO audit_evidence (evidence_id, tenant_id, kind, subject_digest, outcome,"
            " recorded_at) VALUES (:id, :tenant, :kind, :subject, :outcome, :at)"
            " ON CONFLICT (evidence_id) DO NOTHING",
            {
                "id": evidence.evidence_id,
                "tenant": evidence.tenant_id,
                "kind": evidence.kind,
                "subject": evidence.subject_digest,
                "outcome": evidence.outcome,
                "at": evidence.recorded_at,
            },
        )

    return apply_evidence_event


async def recorded_kinds(uow: UnitOfWork, tenant_id: uuid.UUID, digest: str) -> frozenset[str]:
    """The kinds of passing evidence audit recorded about `digest` in `tenant_id`."""
    rows = await uow.fetch_all(
        "SELECT DISTINCT kind FROM audit_evidence WHERE tenant_id = :t AND subject_digest = :d"
        " AND outcome = 'pass'",
        {"t": tenant_id, "d": digest},
    )
    return frozenset(r["kind"] for r in rows)
