"""audit's read use cases: a page of the log, the chain's verification, the status model."""

import dataclasses
import datetime as dt
from typing import Any

from audit.app.chain import GENESIS, chained_fields, record_hash
from audit.store.records import AuditRepository
from platformkit.db import Database


@dataclasses.dataclass(frozen=True)
class Verification:
    records: int
    valid: bool
    first_broken_seq: int | None = None


async def list_records(
    db: Database,
    after: int,
    limit: int,
    tenant: str | None,
    subject: str | None,
    event_type: str | None,
) -> list[Any]:
    async with db.unit_of_work() as uow:
        return await AuditRepository(uow).page(after, limit, tenant, subject, event_type)


async def verify_chain(db: Database) -> Verification:
    """Recompute every hash from the genesis; the first record that does not link breaks it."""
    count, prev = 0, GENESIS
    async with db.unit_of_work() as uow:
        async for row in AuditRepository(uow).chain():
            count += 1
            if row["prev_hash"] != prev or row["hash"] != record_hash(prev, chained_fields(row)):
                return Verification(count, False, row["seq"])
            prev = row["hash"]
    return Verification(count, True)


@dataclasses.dataclass(frozen=True)
class ServiceStatus:
    row: Any
    ready: bool
    stale: bool


async def service_status(
    db: Database, now: dt.datetime, stale_after: dt.timedelta
) -> list[ServiceStatus]:
    """Each service's latest heartbeat; one silent for `stale_after` reads as not ready."""
    async with db.unit_of_work() as uow:
        rows = await AuditRepository(uow).statuses()
    return [
        ServiceStatus(
            r,
            r["ready"] and now - r["last_seen_at"] <= stale_after,
            now - r["last_seen_at"] > stale_after,
        )
        for r in rows
    ]
