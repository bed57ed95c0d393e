"""Rating use case: one batch of metering.usage.v1 events in one transaction.

1. decode the intervals and drop repeats inside the batch (`prepare`: pure, run by the
   kit's batch engine in its read-ahead, while the previous batch is in the database);
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
_decode_usages = msgspec.json.Decoder(list[UsageRecorded]).decode


@dataclasses.dataclass
class RatingStats:
    rated: int = 0
    duplicates: int = 0
    unrated: int = 0
    free: int = 0
    transfers: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class DecodedBatch:
    """A batch's usage intervals, decoded (interval id -> (usage, raw payload)), and how
    many repeats inside the batch were dropped. Read-only once built: it serves every
    retry of its batch."""

    usages: dict[uuid.UUID, tuple[Usage, bytes]]
    duplicates: int
    tenant_ids: frozenset[uuid.UUID] = frozenset()


@dataclasses.dataclass
class UsageRater:
    settings: BillingSettings
    stats: RatingStats = dataclasses.field(default_factory=RatingStats)

    def prepare(self, events: Sequence[CloudEvent]) -> DecodedBatch:
        """Step 1, pure: the kit's batch engine runs it ahead (platformkit.consumers)."""
        datas = [event.data for event in events if event.type == USAGE_RECORDED]
        usages: dict[uuid.UUID, tuple[Usage, bytes]] = {}
        if not datas:
            return DecodedBatch(usages, 0)
        try:  # one decoder call for the whole batch
            payloads = _decode_usages(b"[" + b",".join(datas) + b"]")
        except msgspec.DecodeError:  # a bad or empty payload: name it by decoding one by one
            payloads = [_decode_usage(data) for data in datas]
        for payload, data in zip(payloads, datas, strict=True):
            usages.setdefault(payload.interval_id, (_usage(payload), data))
        tenant_ids = frozenset([u.tenant_id for u, _ in usages.values()])
        return DecodedBatch(usages, len(datas) - len(usages), tenant_ids)

    async def __call__(self, batch: DecodedBatch, uow: UnitOfWork) -> None:
        # Counted before the commit: informational (a failed batch is counted again).
        self._add(await self.rate_decoded(batch, uow))

    async def rate(self, events: Sequence[CloudEvent], uow: UnitOfWork) -> RatingStats:
        return await self.rate_decoded(self.prepare(events), uow)

    async def rate_decoded(self, batch: DecodedBatch, uow: UnitOfWork) -> RatingStats:
        stats = RatingStats(duplicates=batch.duplicates)
        if not batch.usages:
            return stats
        stats, _ = await self.rate_usages(batch.usages, uow, stats, batch.tenant_ids)
        return stats

    async def rate_usages(
        self,
        usages: dict[uuid.UUID, tuple[Usage, bytes]],
        uow: UnitOfWork,
        stats: RatingStats | None = None,
        tenant_ids: frozenset[uuid.UUID] = frozenset(),
    ) -> tuple[RatingStats, list[uuid.UUID]]:
        """Rate decoded intervals (interval id -> (usage, raw payload)); returns the stats and
        the ids of the intervals parked for lack of a price. Also the re-rating path.
        `tenant_ids`, when given, are the usages' tenants (prepare computed them ahead: a
        set of UUIDs costs a Python-level hash per interval)."""
        stats = stats or RatingStats()
        repo = LedgerRepository(uow)
        tenant_ids = tenant_ids or frozenset([u.tenant_id for u, _ in usages.values()])
        locked = await repo.lock_tenants(tenant_ids)
        missing = tenant_ids - locked.keys()
        if missing:
            await repo.open_tenants(
                sorted(missing), self.settings.currency, self.settings.low_threshold_micros
            )
            locked = await repo.lock_tenants(tenant_ids)
        existing = await repo.existing_transfer_ids(list(usages))
        stats.duplicates += len(existing)
        if existing:
            fresh = [u for iid, (u, _) in usages.items() if iid not in existing]
            touched = {u.tenant_id for u in fresh}
        else:  # the usual case: no redelivery
            fresh, touched = [u for u, _ in usages.values()], set(tenant_ids)
        if not fresh:
            return stats, []
        # Read after the lock, in a statement of its own: READ COMMITTED gives it a snapshot
        # taken once the lock is held, so balances another batch committed while this one
        # waited are seen (one statement that locks and joins the accounts would read them
        # as they were before the wait).
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
        charged = (
            touched  # every fresh interval was charged
            if len(batch.charges) == len(fresh)
            else {c.usage.tenant_id for c in batch.charges}
        )
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
