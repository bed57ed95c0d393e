"""audit's HTTP routes: the log's key, checkpoints and proofs, records (a tenant's own for
its owners and admins, the fleet's for operators) and the status read model.

Authorization: the key is public (a verifier needs it before it trusts anything); every
other log route needs a principal. A tenant's records, and the inclusion proof of one of its
records, are for its owners and admins (another tenant's read as 404, a lower role 403);
operators read every record. Checkpoints and consistency proofs name only tree sizes and
hashes, no record content: any principal may read them.
"""

import base64
import datetime as dt
import os
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import Parameter

from audit.api.schemas import (
    CheckpointOut,
    ConsistencyOut,
    EvidenceIn,
    EvidencePageOut,
    InclusionOut,
    LogKey,
    RecordOut,
    RecordPageOut,
    RetentionIn,
    RetentionOut,
    ServiceState,
    StatusReport,
)
from audit.app import evidence as evidence_app
from audit.app import queries
from audit.app.log import AuditLog, record_json
from audit.app.retention import set_retention
from gpucloud_contracts.events.audit import EvidenceRecorded
from platformkit.auth import Principal, bearer_token, provide_principal, require_operator
from platformkit.db import Database
from platformkit.errors import Forbidden, NotFound, Unauthorized, ValidationFailed

STALE_AFTER = dt.timedelta(seconds=float(os.environ.get("GPUCLOUD_STATUS_STALE_AFTER_S", "20")))
# Whether a caller without a token may read the fleet's readiness (names, ready, stale):
# off unless configured (devstack turns it on for its status page). Versions, git SHAs,
# instance names and start times are an operator's, whoever else asks.
STATUS_PUBLIC = os.environ.get("GPUCLOUD_AUDIT_STATUS_PUBLIC", "false").lower() == "true"
READER_ROLES = ("owner", "admin")


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


def _checkpoint(row: Any) -> CheckpointOut:
    return CheckpointOut(
        size=row["size"],
        root=_b64(bytes(row["root"])),
        signed_at=row["signed_at"],
        note=row["note"],
    )


def _reader(principal: Principal, tenant_id: uuid.UUID | str) -> None:
    principal.require_tenant(tenant_id)
    principal.require_role(*READER_ROLES)


def _page(page: queries.RecordPage) -> RecordPageOut:
    items = [
        RecordOut(
            index=r["idx"],
            leaf=_b64(bytes(r["leaf"])),
            record=record_json(bytes(r["leaf"])),
            proof=[_b64(h) for h in page.proofs[r["idx"]]] if r["idx"] in page.proofs else None,
        )
        for r in page.rows
    ]
    return RecordPageOut(
        items=items,
        checkpoint=_checkpoint(page.checkpoint) if page.checkpoint else None,
        next_after=page.next_after,
    )


def _jsonl(page: RecordPageOut) -> Response[bytes]:
    body = b"".join(msgspec.json.encode(item) + b"\n" for item in page.items)
    headers = {"X-Next-After": str(page.next_after)} if page.next_after is not None else {}
    return Response(body, media_type=JSONL, headers=headers)


@dataclass
class _RecordsOperation(Operation):
    """A records page's 200 is JSON, or JSON Lines with `format=jsonl`: both media types
    documented (litestar's ResponseSpec names one)."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if ok is not None and not isinstance(ok, dict) and ok.content is not None:
            ok.content[JSONL] = OpenAPIMediaType(
                schema=Schema(
                    type=OpenAPIType.STRING,
                    description="One record per line, as `items` of the JSON page",
                )
            )


JSONL = "application/jsonl"
IdempotencyKey = Annotated[
    str | None, Parameter(header="Idempotency-Key", min_length=1, max_length=200)
]
Subject = Annotated[str, Parameter(pattern=r"^sha256:[0-9a-f]{64}$")]
Kind = Annotated[str | None, Parameter(pattern=r"^[a-z][a-z0-9-]{0,62}$")]


def _record_command(
    tenant_id: uuid.UUID,
    project_id: uuid.UUID | None,
    data: EvidenceIn,
    principal: Principal,
    key: str | None,
) -> evidence_app.RecordEvidence:
    return evidence_app.RecordEvidence(
        tenant_id=tenant_id,
        project_id=project_id,
        kind=data.kind,
        subject_digest=data.subject_digest,
        outcome=data.outcome,
        content_digest=data.content_digest,
        uri=data.uri,
        details=data.details,
        principal=principal,
        idempotency_key=key,
    )


def _stored(status: int, body: bytes) -> Response[bytes]:
    return Response(body, status_code=status, media_type="application/json")


Limit = Annotated[int, Parameter(ge=1, le=1000)]
After = Annotated[int, Parameter(ge=0)]
Format = Annotated[str, Parameter(pattern="^(json|jsonl)$")]


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["audit"]

    @get("/log/key", operation_id="getAuditLogKey")
    async def key(self, db: Database, audit_log: AuditLog) -> LogKey:
        verifier = await audit_log.verifier(db)
        return LogKey(origin=audit_log.config.origin, vkey=verifier.vkey)

    @get("/log/checkpoint", operation_id="getLatestAuditCheckpoint")
    async def checkpoint(self, db: Database, principal: Principal) -> CheckpointOut:
        return _checkpoint(await queries.latest_checkpoint(db))

    @get("/log/checkpoints/{size:int}", operation_id="getAuditCheckpoint")
    async def checkpoint_of_size(
        self, size: int, db: Database, principal: Principal
    ) -> CheckpointOut:
        return _checkpoint(await queries.checkpoint_of_size(db, size))

    @get("/log/consistency", operation_id="getAuditConsistencyProof")
    async def consistency(
        self,
        db: Database,
        audit_log: AuditLog,
        principal: Principal,
        first: Annotated[int, Parameter(ge=0)],
        second: Annotated[int, Parameter(ge=0)],
    ) -> ConsistencyOut:
        proof = await queries.consistency_proof(db, audit_log, first, second)
        return ConsistencyOut(first=first, second=second, proof=[_b64(h) for h in proof])

    @get(
        "/records",
        operation_id="listAuditRecords",
        operation_class=_RecordsOperation,
        description="The fleet log (operators): every record, or one tenant's with `tenant`.",
        guards=[require_operator],
    )
    async def fleet_records(
        self,
        db: Database,
        audit_log: AuditLog,
        tenant: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        after: After = 0,
        limit: Limit = 100,
        proofs: bool = False,
        format: Format = "json",
        size: Annotated[int | None, Parameter(ge=1)] = None,
    ) -> Response[Any]:
        page = await queries.records(
            db,
            audit_log,
            tenant=tenant,
            fleet=True,
            filters=queries.Filters(actor, action, target, since, until),
            after=after,
            limit=limit,
            proofs=proofs,
            size=size,
        )
        out = _page(page)
        return _jsonl(out) if format == "jsonl" else Response(out)

    @get(
        "/tenants/{tenant_id:uuid}/records",
        operation_id="listTenantAuditRecords",
        operation_class=_RecordsOperation,
        description="A tenant's own trail (owners and admins); `format=jsonl` exports JSON"
        " Lines (the next cursor in `X-Next-After`), `proofs=true` adds inclusion proofs in"
        " the page's checkpoint: the latest, or the one of tree `size` (page a whole trail"
        " at one checkpoint).",
    )
    async def tenant_records(
        self,
        tenant_id: uuid.UUID,
        db: Database,
        audit_log: AuditLog,
        principal: Principal,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        after: After = 0,
        limit: Limit = 100,
        proofs: bool = False,
        format: Format = "json",
        size: Annotated[int | None, Parameter(ge=1)] = None,
    ) -> Response[Any]:
        _reader(principal, tenant_id)
        page = await queries.records(
            db,
            audit_log,
            tenant=str(tenant_id),
            fleet=False,
            filters=queries.Filters(actor, action, target, since, until),
            after=after,
            limit=limit,
            proofs=proofs,
            size=size,
        )
        out = _page(page)
        return _jsonl(out) if format == "jsonl" else Response(out)

    @get("/records/{index:int}/proof", operation_id="getAuditInclusionProof")
    async def inclusion(
        self,
        index: int,
        db: Database,
        audit_log: AuditLog,
        principal: Principal,
        size: Annotated[int | None, Parameter(ge=1)] = None,
    ) -> InclusionOut:
        if index < 0:
            raise ValidationFailed.for_field("index", "must be >= 0")
        row, at, proof = await queries.record_with_proof(db, audit_log, index, size)
        if not principal.is_operator:
            if row["tenant"] is None:
                raise NotFound("no such record")
            _reader(principal, row["tenant"])
        leaf = bytes(row["leaf"])
        return InclusionOut(
            index=index,
            size=at,
            leaf=_b64(leaf),
            record=record_json(leaf),
            proof=[_b64(h) for h in proof],
        )

    @post(
        "/tenants/{tenant_id:uuid}/projects/{project_id:uuid}/evidence",
        operation_id="recordEvidence",
        status_code=201,
        description="Record a check's result about a digest (a bundle's manifest digest): the"
        " tenant's owners, admins and members, the project's admins and members (a CI"
        " service account bound to it), operators. Immutable; published as"
        " `audit.evidence.recorded` and kept in the audit log.",
        responses={
            201: ResponseSpec(
                EvidenceRecorded, description="The stored record", generate_examples=False
            )
        },
    )
    async def record_evidence(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        data: EvidenceIn,
        db: Database,
        principal: Principal,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[bytes]:
        evidence_app.authorize_record(principal, tenant_id, project_id)
        if tenant_id == evidence_app.PLATFORM_TENANT:
            raise NotFound("no such resource")
        command = _record_command(tenant_id, project_id, data, principal, idempotency_key)
        return _stored(*await evidence_app.record_evidence(db, command))

    @post(
        "/evidence",
        operation_id="recordPlatformEvidence",
        status_code=201,
        description="Record the platform's own evidence (tenant 00000000-..., e.g. which"
        " version of every service passed readiness after a deploy): operators only.",
        guards=[require_operator],
        responses={
            201: ResponseSpec(
                EvidenceRecorded, description="The stored record", generate_examples=False
            )
        },
    )
    async def record_platform_evidence(
        self,
        data: EvidenceIn,
        db: Database,
        principal: Principal,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[bytes]:
        command = _record_command(
            evidence_app.PLATFORM_TENANT, None, data, principal, idempotency_key
        )
        return _stored(*await evidence_app.record_evidence(db, command))

    @get(
        "/evidence",
        operation_id="listEvidence",
        description="The evidence records about a digest that the caller may read, oldest"
        " first: the tenant's readers (owner, admin, member, viewer) every record of their"
        " tenant, project roles and service accounts their projects' records, operators"
        " every record (`tenant` narrows; the platform's own is tenant"
        " 00000000-0000-0000-0000-000000000000).",
    )
    async def list_evidence(
        self,
        db: Database,
        principal: Principal,
        subject: Subject,
        kind: Kind = None,
        tenant: uuid.UUID | None = None,
        limit: Limit = 100,
    ) -> EvidencePageOut:
        if not principal.is_operator:
            if principal.tenant_id is None:
                raise NotFound("no such resource")
            if not (
                principal.roles & evidence_app.TENANT_READER_ROLES
                or any(
                    r & evidence_app.PROJECT_READER_ROLES for r in principal.project_roles.values()
                )
            ):
                raise Forbidden("your role does not read evidence")
        items = await evidence_app.evidence_about(db, principal, subject, kind, tenant, limit)
        return EvidencePageOut(items=items)

    @put("/tenants/{tenant_id:uuid}/retention", operation_id="setAuditRetention")
    async def retention(
        self, tenant_id: uuid.UUID, data: RetentionIn, db: Database, principal: Principal
    ) -> RetentionOut:
        """A tenant's retention (days, at least 400 unless an operator sets it)."""
        principal.require_operator()
        days = await set_retention(db, str(tenant_id), data.days)
        return RetentionOut(tenant_id=str(tenant_id), days=days)

    @get("/status", operation_id="getServiceStatus")
    async def status(self, request: Request[Any, Any, Any], db: Database) -> StatusReport:
        """Each service's readiness; its version, git SHA, instance and start time only to
        operators. Without a token only where GPUCLOUD_AUDIT_STATUS_PUBLIC is on."""
        caller = await provide_principal(request) if bearer_token(request) else None
        if caller is None and not STATUS_PUBLIC:
            raise Unauthorized("a bearer token is required (the status page is not public)")
        full = caller is not None and caller.is_operator
        now = dt.datetime.now(dt.UTC)
        services = [
            ServiceState(
                name=s.row["service"],
                ready=s.ready,
                stale=s.stale,
                checks=s.row["checks"],
                last_seen_at=s.row["last_seen_at"],
                **(
                    {
                        "version": s.row["version"],
                        "git_sha": s.row["git_sha"],
                        "instance": s.row["instance"],
                        "started_at": s.row["started_at"],
                    }
                    if full
                    else {}
                ),
            )
            for s in await queries.service_status(db, now, STALE_AFTER)
        ]
        return StatusReport(services=services, generated_at=now)
