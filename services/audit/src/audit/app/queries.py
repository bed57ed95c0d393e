"""audit's read use cases: checkpoints, proofs, pages of records (with inclusion proofs in
the latest signed tree), the status model. Every read of records is bounded by the latest
checkpoint, so what a reader is shown is exactly what a signed tree head covers."""

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from audit.app.log import AuditLog
from audit.store.log import LogRepository
from audit.store.records import AuditRepository
from gpucloud_trust import tiles
from platformkit.db import Database
from platformkit.errors import NotFound, ValidationFailed


@dataclasses.dataclass(frozen=True)
class Filters:
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class RecordPage:
    checkpoint: Any
    rows: Sequence[Any]
    proofs: dict[int, list[bytes]]
    next_after: int | None


async def latest_checkpoint(db: Database) -> Any:
    async with db.unit_of_work() as uow:
        row = await LogRepository(uow).latest_checkpoint()
    if row is None:
        raise NotFound("the audit log has no checkpoint yet")
    return row


async def checkpoint_of_size(db: Database, size: int) -> Any:
    async with db.unit_of_work() as uow:
        row = await LogRepository(uow).checkpoint(size)
    if row is None:
        raise NotFound(f"no checkpoint of tree size {size}")
    return row


async def consistency_proof(db: Database, log: AuditLog, first: int, second: int) -> list[bytes]:
    """RFC 9162 consistency proof between two checkpointed tree sizes."""
    if first > second:
        raise ValidationFailed.for_field("first", "must not exceed second")
    async with db.unit_of_work() as uow:
        repo = LogRepository(uow)
        latest = await repo.latest_checkpoint()
        if latest is None or second > latest["size"]:
            raise ValidationFailed.for_field("second", "beyond the latest checkpoint")
        if first == 0 or first == second:
            return []
        plan = tiles.consistency_plan(first, second)
        return plan.assemble(await repo.read_tiles(plan.tiles()))


async def records(
    db: Database,
    log: AuditLog,
    *,
    tenant: str | None,
    fleet: bool,
    filters: Filters,
    after: int,
    limit: int,
    proofs: bool,
    size: int | None = None,
) -> RecordPage:
    """A page of records below a signed checkpoint: the latest, or the one of tree `size`
    (a verifier pages a whole trail at one checkpoint, so every proof is in the same tree)."""
    async with db.unit_of_work(snapshot=True) as uow:
        repo = LogRepository(uow)
        if size is None:
            checkpoint = await repo.latest_checkpoint()
        else:
            checkpoint = await repo.checkpoint(size)
            if checkpoint is None:
                raise ValidationFailed.for_field("size", f"no checkpoint of tree size {size}")
        if checkpoint is None or checkpoint["size"] == 0:
            return RecordPage(checkpoint, [], {}, None)
        rows = await repo.records(
            tenant=tenant,
            fleet=fleet,
            after=after,
            limit=limit,
            below=checkpoint["size"],
            **dataclasses.asdict(filters),
        )
        found = (
            await log.inclusion_proofs(repo, [r["idx"] for r in rows], checkpoint["size"])
            if proofs
            else {}
        )
    next_after = rows[-1]["idx"] + 1 if len(rows) == limit else None
    return RecordPage(checkpoint, rows, found, next_after)


async def record_with_proof(db: Database, log: AuditLog, index: int, size: int | None) -> Any:
    """One record and its inclusion proof in the tree of `size` (the latest checkpoint's by
    default)."""
    async with db.unit_of_work(snapshot=True) as uow:
        repo = LogRepository(uow)
        checkpoint = await repo.latest_checkpoint()
        limit = checkpoint["size"] if checkpoint else 0
        size = limit if size is None else size
        if size > limit:
            raise ValidationFailed.for_field("size", "beyond the latest checkpoint")
        row = await repo.record(index)
        if row is None or index >= size:
            raise NotFound("no such record")
        proof = (await log.inclusion_proofs(repo, [index], size))[index]
    return row, size, proof


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
