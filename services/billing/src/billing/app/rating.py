"""Rating use case: one batch of metering.usage.v1 events in one transaction.

1. decode the intervals and drop repeats inside the batch;
2. open unknown tenants (usage may overtake iam's TenantCreated: the topics are not ordered
   with each other), lock the touched tenants in id order;
3. drop intervals already in the ledger (their leg-0 transfer id is the interval id);
4. price and split each interval (pure domain), insert every transfer from arrays with
   ON CONFLICT DO NOTHING and move each touched account's cached balance once;
5. announce standing crossings (low, exhausted, back to ok) through the outbox; other
   movements are announced by the periodic announcer (app/balances.py).
The caller (the kit's consumer engine, billing's `rating` batch subscription) commits the
database, then the Kafka offsets.
"""

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence

import msgspec

from billing.app.balances import announce_standings
from billing.domain.pricing import PriceBook
from billing.domain.rating import Usage, rate_batch
from billing.settings import BillingSettings
from billing.store.ledger import LedgerRepository, TransferColumns
from gpucloud_contracts.events.metering import UsageRecorded
from platformkit.db import UnitOfWork
from platformkit.envelope import CloudEvent

USAGE_RECORDED = "metering.usage.recorded"
_decode_usage = msgspec.json.Decoder(UsageRecorded).decode


@dataclasses.dataclass
class RatingStats:
    rated: int = 0
    duplicates: int = 0
    unrated: int = 0
    free: int = 0
    transfers: int = 0


@dataclasses.dataclass
class UsageRater:
    settings: BillingSettings
    stats: RatingStats = dataclasses.field(default_factory=RatingStats)

    async def __call__(self, events: Sequence[CloudEvent], uow: UnitOfWork) -> None:
        # Counted before the commit: informational (a failed batch is counted again).
        self._add(await self.rate(events, uow))

    async def rate(self, events: Sequence[CloudEvent], uow: UnitOfWork) -> RatingStats:
        stats = RatingStats()
        usages: dict[uuid.UUID, tuple[Usage, bytes]] = {}
        for event in events:
            if event.type != USAGE_RECORDED:
                continue
            payload = _decode_usage(event.data)
            if payload.interval_id in usages:
                stats.duplicates += 1
                continue
            usages[payload.interval_id] = (_usage(payload), event.data)
        if not usages:
            return stats
        stats, _ = await self.rate_usages(usages, uow, stats)
        return stats

    async def rate_usages(
        self,
        usages: dict[uuid.UUID, tuple[Usage, bytes]],
        uow: UnitOfWork,
        stats: RatingStats | None = None,
    ) -> tuple[RatingStats, list[uuid.UUID]]:
        """Rate decoded intervals (interval id -> (usage, raw payload)); returns the stats and
        the ids of the intervals parked for lack of a price. Also the re-rating path."""
        stats = stats or RatingStats()
        repo = LedgerRepository(uow)
        tenant_ids = {u.tenant_id for u, _ in usages.values()}
        locked = await repo.lock_tenants(tenant_ids)
        missing = tenant_ids - locked.keys()
        if missing:
            await repo.open_tenants(
                sorted(missing), self.settings.currency, self.settings.low_threshold_micros
            )
            locked = await repo.lock_tenants(tenant_ids)
        existing = await repo.existing_transfer_ids(list(usages))
        stats.duplicates += len(existing)
        fresh = [u for iid, (u, _) in usages.items() if iid not in existing]
        if not fresh:
            return stats, []
        touched = {u.tenant_id for u in fresh}
        tenants = await repo.tenant_ledgers({t: locked[t] for t in touched})
        prices = PriceBook(await repo.price_versions({u.price_key for u in fresh}, touched))
        batch = rate_batch(fresh, tenants, prices)
        stats.transfers = await repo.post(TransferColumns.for_charges(batch.charges))
        await repo.add_unrated(
            [
                (u.interval_id, u.tenant_id, u.price_key, u.started_at, usages[u.interval_id][1])
                for u in batch.unrated
            ]
        )
        charged = {c.usage.tenant_id for c in batch.charges}
        await announce_standings(
            uow,
            [tenants[t] for t in sorted(charged)],
            dt.datetime.now(dt.UTC),
            only_crossings=True,
        )
        stats.rated = len(batch.charges)
        stats.unrated = len(batch.unrated)
        stats.free = batch.free
        return stats, [u.interval_id for u in batch.unrated]

    def _add(self, stats: RatingStats) -> None:
        for field in dataclasses.fields(RatingStats):
            name = field.name
            setattr(self.stats, name, getattr(self.stats, name) + getattr(stats, name))


def decode_usage(payload: bytes) -> Usage:
    return _usage(_decode_usage(payload))


def _usage(p: UsageRecorded) -> Usage:
    return Usage(
        interval_id=p.interval_id,
        allocation_id=p.allocation_id,
        tenant_id=p.tenant_id,
        project_id=p.project_id,
        price_key=p.price_key,
        quantity=p.quantity,
        started_at=p.started_at,
        ended_at=p.ended_at,
        duration_ms=p.duration_ms,
    )
