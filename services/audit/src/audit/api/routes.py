"""audit's HTTP routes: the audit log (operators) and the status read model (public)."""

import datetime as dt
import os
from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter

from audit.api.schemas import AuditPage, AuditRecord, ChainVerification, ServiceState, StatusReport
from audit.app.queries import list_records, service_status, verify_chain
from platformkit.auth import require_operator
from platformkit.db import Database

STALE_AFTER = dt.timedelta(seconds=float(os.environ.get("GPUCLOUD_STATUS_STALE_AFTER_S", "20")))


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
        rows = await list_records(db, after, limit, tenant, subject, event_type)
        items = [AuditRecord(**dict(r)) for r in rows]
        return AuditPage(items=items, next_after=items[-1].seq if len(items) == limit else None)

    @get("/records/verify", operation_id="verifyAuditChain", guards=[require_operator])
    async def verify(self, db: Database) -> ChainVerification:
        checked = await verify_chain(db)
        return ChainVerification(
            records=checked.records, valid=checked.valid, first_broken_seq=checked.first_broken_seq
        )

    @get("/status", operation_id="getServiceStatus")
    async def status(self, db: Database) -> StatusReport:
        now = dt.datetime.now(dt.UTC)
        services = [
            ServiceState(
                name=s.row["service"],
                version=s.row["version"],
                git_sha=s.row["git_sha"],
                ready=s.ready,
                checks=s.row["checks"],
                instance=s.row["instance"],
                started_at=s.row["started_at"],
                last_seen_at=s.row["last_seen_at"],
                stale=s.stale,
            )
            for s in await service_status(db, now, STALE_AFTER)
        ]
        return StatusReport(services=services, generated_at=now)
