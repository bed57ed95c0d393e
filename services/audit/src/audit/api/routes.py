"""audit's HTTP routes: the audit log (operators) and the status read model (public)."""

import datetime as dt
import os
from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter
from sqlalchemy import text

from audit.api.schemas import AuditPage, AuditRecord, ChainVerification, ServiceState, StatusReport
from audit.app.chain import GENESIS, chained_fields, record_hash
from platformkit.auth import require_operator
from platformkit.db import Database

STALE_AFTER = dt.timedelta(seconds=float(os.environ.get("GPUCLOUD_STATUS_STALE_AFTER_S", "20")))
_VERIFY_SCAN = text(
    "SELECT seq, id, event_id, event_type, source, subject, tenant, occurred_at, payload,"
    " prev_hash, hash FROM audit_records ORDER BY seq"
)
_COLUMNS = (
    "seq, id, event_id, event_type, source, subject, tenant, trace_id, occurred_at,"
    " recorded_at, payload, hash"
)


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["audit"]

    @get("/records", operation_id="listAuditRecords", guards=[require_operator])
    async def list_records(
        self,
        db: Database,
        tenant: str | None = None,
        subject: str | None = None,
        event_type: str | None = None,
        after: Annotated[int, Parameter(ge=0)] = 0,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
    ) -> AuditPage:
        async with db.unit_of_work() as uow:
            rows = await uow.fetch_all(
                f"SELECT {_COLUMNS} FROM audit_records WHERE seq > :after"  # noqa: S608
                " AND (CAST(:tenant AS text) IS NULL OR tenant = :tenant)"
                " AND (CAST(:subject AS text) IS NULL OR subject = :subject)"
                " AND (CAST(:event_type AS text) IS NULL OR event_type = :event_type)"
                " ORDER BY seq LIMIT :limit",
                {
                    "after": after,
                    "tenant": tenant,
                    "subject": subject,
                    "event_type": event_type,
                    "limit": limit,
                },
            )
        items = [AuditRecord(**dict(r)) for r in rows]
        return AuditPage(items=items, next_after=items[-1].seq if len(items) == limit else None)

    @get("/records/verify", operation_id="verifyAuditChain", guards=[require_operator])
    async def verify(self, db: Database) -> ChainVerification:
        count, prev = 0, GENESIS
        async with db.unit_of_work() as uow:
            result = await uow.session.stream(_VERIFY_SCAN)
            async for row in result.mappings():
                count += 1
                if row["prev_hash"] != prev or row["hash"] != record_hash(
                    prev, chained_fields(row)
                ):
                    return ChainVerification(
                        records=count, valid=False, first_broken_seq=row["seq"]
                    )
                prev = row["hash"]
        return ChainVerification(records=count, valid=True)

    @get("/status", operation_id="getServiceStatus")
    async def status(self, db: Database) -> StatusReport:
        now = dt.datetime.now(dt.UTC)
        async with db.unit_of_work() as uow:
            rows = await uow.fetch_all("SELECT * FROM service_status ORDER BY service")
        services = [
            ServiceState(
                name=r["service"],
                version=r["version"],
                git_sha=r["git_sha"],
                ready=r["ready"] and now - r["last_seen_at"] <= STALE_AFTER,
                checks=r["checks"],
                instance=r["instance"],
                started_at=r["started_at"],
                last_seen_at=r["last_seen_at"],
                stale=now - r["last_seen_at"] > STALE_AFTER,
            )
            for r in rows
        ]
        return StatusReport(services=services, generated_at=now)
