"""Retention: a policy per tenant (default 400 days, PCI DSS 10.5.1 asks for at least a
year) and the pruning job. The log is one fleet tree, so pruning removes an index prefix:
every leaf below `m` and every tile covering only such leaves, where `m` is the lowest index
still within its tenant's retention, rounded down to a whole level-0 tile (256 leaves) and
never above the latest checkpoint (the final checkpoint covering what goes was signed and
published first). The database function `audit_prune` re-checks all of it, so the runtime
role cannot prune a record still within retention. Proofs of every leaf at or above `m`
and consistency proofs between sizes at or above `m` still verify (tiles.prunable)."""

import datetime as dt

from audit.app.log import Clock, utcnow
from audit.store.log import LogRepository
from gpucloud_trust.tiles import TILE_WIDTH
from platformkit.db import Database
from platformkit.errors import ValidationFailed

DEFAULT_DAYS = 400
MAX_DAYS = 36_500


async def set_retention(db: Database, tenant: str, days: int) -> int:
    if not 1 <= days <= MAX_DAYS:
        raise ValidationFailed.for_field("days", f"must be between 1 and {MAX_DAYS}")
    async with db.unit_of_work() as uow:
        await LogRepository(uow).set_retention(tenant, days, dt.datetime.now(dt.UTC))
        await uow.commit()
    return days


async def prune(db: Database, clock: Clock = utcnow) -> int:
    """One run of the pruning job: the number of records removed (0 when nothing is due)."""
    now = clock()
    async with db.unit_of_work() as uow:
        repo = LogRepository(uow)
        checkpoint = await repo.latest_checkpoint()
        if checkpoint is None:
            return 0
        retained = await repo.first_retained_index(now)
        bound = checkpoint["size"] if retained is None else min(retained, checkpoint["size"])
        bound -= bound % TILE_WIDTH
        if bound <= await repo.pruned_below():
            return 0
        removed = await repo.prune(bound, now)
        await uow.commit()
        return removed
