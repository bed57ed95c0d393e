"""Evidence records (docs/audit.md "Evidence"): a check's result about a subject digest.

Recording one is one transaction: the row (immutable for the runtime role) and its
`audit.evidence.recorded` event through the outbox. audit's own log consumer then appends
the event as a leaf of the Merkle log like any other privileged action, and registry projects
it for the promotion policy's required evidence. A repeated Idempotency-Key answers the same
record.

Who may record: in a tenant's project, the tenant's owners, admins and members and the
project's admins and members (a CI service account bound to the project); the platform's
own evidence (tenant 00000000-..., e.g. a deploy's readiness) only operators. Who may read:
the tenant's roles that read (owner, admin, member, viewer) every record of the tenant;
project roles and service accounts those recorded in their projects; operators everything.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from typing import Any

import msgspec

from audit.app.log import EVENTS
from gpucloud_contracts.events.audit import EvidenceRecorded
from platformkit.auth import Principal
from platformkit.db import Database, UnitOfWork
from platformkit.errors import ValidationFailed
from platformkit.idempotency import IdempotentRequest, StoredResponse, run_once
from platformkit.ids import uuid7

PLATFORM_TENANT = uuid.UUID(int=0)
DETAILS_MAX_BYTES = 16 * 1024
# tenant roles owner/admin/member, project roles admin/member (Principal.roles_in_project)
WRITER_ROLES = ("owner", "admin", "member")
TENANT_READER_ROLES = frozenset({"owner", "admin", "member", "viewer"})
PROJECT_READER_ROLES = frozenset({"admin", "member", "viewer"})
EVIDENCE_RECORDED = "audit.evidence.recorded"


@dataclasses.dataclass(frozen=True)
class RecordEvidence:
    tenant_id: uuid.UUID
    project_id: uuid.UUID | None
    kind: str
    subject_digest: str
    outcome: str
    content_digest: str | None
    uri: str | None
    details: dict[str, Any] | None
    principal: Principal
    idempotency_key: str | None


def producer_kind(principal: Principal) -> str:
    if principal.is_operator:
        return "operator"
    return "service_account" if principal.kind == "service_account" else "user"


DETAILS_MAX_DEPTH = 8


def _storable(value: Any, depth: int = 0) -> bool:
    """JSON PostgreSQL's jsonb keeps as given: no NUL, no lone surrogate, bounded nesting."""
    if depth > DETAILS_MAX_DEPTH:
        return False
    if isinstance(value, str):
        if "\x00" in value:
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_storable(k, depth) and _storable(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(v, depth + 1) for v in value)
    return True


def _check_details(details: dict[str, Any] | None) -> None:
    if details is None:
        return
    if not _storable(details):
        raise ValidationFailed.for_field(
            "details",
            f"strings must be UTF-8 without NUL, nested at most {DETAILS_MAX_DEPTH} deep",
        )
    if len(json.dumps(details)) > DETAILS_MAX_BYTES:
        raise ValidationFailed.for_field("details", f"at most {DETAILS_MAX_BYTES} bytes as JSON")


def _row_out(row: Any) -> EvidenceRecorded:
    details = row["details"]
    return EvidenceRecorded(
        evidence_id=row["id"],
        tenant_id=row["tenant_id"],
        project_id=row["project_id"],
        kind=row["kind"],
        subject_digest=row["subject_digest"],
        content_digest=row["content_digest"],
        uri=row["uri"],
        outcome=row["outcome"],
        details=details if details is None or isinstance(details, dict) else json.loads(details),
        producer=row["producer"],
        producer_kind=row["producer_kind"],
        recorded_at=row["recorded_at"],
    )


async def record_evidence(db: Database, command: RecordEvidence) -> tuple[int, bytes]:
    """(status, JSON body) of the stored record: 201, or the first answer replayed."""
    _check_details(command.details)
    request = IdempotentRequest.of(
        f"audit.evidence.{command.tenant_id}",
        command.idempotency_key,
        {
            "project_id": str(command.project_id) if command.project_id else None,
            "kind": command.kind,
            "subject_digest": command.subject_digest,
            "outcome": command.outcome,
            "content_digest": command.content_digest,
            "uri": command.uri,
            "details": command.details,
        },
    )

    async def work(uow: UnitOfWork) -> EvidenceRecorded:
        principal = command.principal
        row = await uow.fetch_one(
            "INSERT INTO audit_evidence (id, tenant_id, project_id, kind, subject_digest,"
            " content_digest, uri, outcome, details, producer, producer_kind, recorded_at)"
            " VALUES (:id, :tenant_id, :project_id, :kind, :subject_digest, :content_digest,"
            " :uri, :outcome, CAST(:details AS jsonb), :producer, :producer_kind, :now)"
            " RETURNING *",
            {
                "id": uuid7(),
                "tenant_id": command.tenant_id,
                "project_id": command.project_id,
                "kind": command.kind,
                "subject_digest": command.subject_digest,
                "content_digest": command.content_digest,
                "uri": command.uri,
                "outcome": command.outcome,
                "details": None if command.details is None else json.dumps(command.details),
                "producer": principal.subject,
                "producer_kind": producer_kind(principal),
                "now": dt.datetime.now(dt.UTC),
            },
        )
        evidence = _row_out(row)
        await EVENTS.add_event(
            uow,
            EVIDENCE_RECORDED,
            subject=str(evidence.evidence_id),
            payload=evidence,
            tenant=None if command.tenant_id == PLATFORM_TENANT else str(command.tenant_id),
            actor=principal.subject,
            actor_kind=producer_kind(principal),
        )
        return evidence

    reply = await run_once(db, request, work, lambda e: StoredResponse(201, msgspec.json.encode(e)))
    return reply.status, reply.body


async def evidence_about(
    db: Database,
    principal: Principal,
    subject_digest: str,
    kind: str | None,
    tenant_id: uuid.UUID | None,
    limit: int,
) -> list[EvidenceRecorded]:
    """The records about `subject_digest` the caller may read, oldest first."""
    projects: list[uuid.UUID] | None = None
    if not principal.is_operator:
        if principal.tenant_id is None:
            return []
        tenant_id = principal.tenant_id
        if principal.project_ids is not None or not principal.roles & TENANT_READER_ROLES:
            # project roles (and a service account's binding) read their projects' records
            projects = [
                p
                for p, roles in principal.project_roles.items()
                if roles & PROJECT_READER_ROLES
                and (principal.project_ids is None or p in principal.project_ids)
            ]
    async with db.unit_of_work() as uow:
        rows = await uow.fetch_all(
            "SELECT * FROM audit_evidence WHERE subject_digest = :subject"
            " AND (CAST(:kind AS text) IS NULL OR kind = CAST(:kind AS text))"
            " AND (CAST(:tenant AS uuid) IS NULL OR tenant_id = CAST(:tenant AS uuid))"
            " AND (CAST(:projects AS uuid[]) IS NULL"
            "      OR project_id = ANY(CAST(:projects AS uuid[])))"
            " ORDER BY recorded_at, id LIMIT :limit",
            {
                "subject": subject_digest,
                "kind": kind,
                "tenant": tenant_id,
                "projects": projects,
                "limit": limit,
            },
        )
    return [_row_out(r) for r in rows]


def authorize_record(principal: Principal, tenant_id: uuid.UUID, project_id: uuid.UUID) -> None:
    """Refusals: another tenant 404, a service account outside its project 404, a role that
    does not record evidence 403."""
    if principal.is_operator:
        return
    principal.require_tenant(tenant_id)
    principal.require_project_role(project_id, *WRITER_ROLES)
