"""Balance events, always through the outbox in the transaction that read the balance.

Top-ups, grants, expiries and reversals announce the tenant's standing in their own
transaction. Rating announces only crossings (ok -> low -> exhausted and back) at once; the
other balance movements are announced by the periodic announcer, at most once per tenant
per period (GPUCLOUD_BILLING_ANNOUNCE_INTERVAL_S)."""

import datetime as dt
from collections.abc import Sequence

from billing.app.events import EVENTS
from billing.domain.balance import Standing, standing_of
from billing.domain.rating import StandingChange, TenantLedger, standing_changes
from billing.store.ledger import LedgerRepository
from gpucloud_contracts.events.billing import BalanceChanged
from platformkit.db import Database, UnitOfWork
from platformkit.envelope import CloudEvent
from platformkit.telemetry import current_traceparent


def balance_events(changes: Sequence[StandingChange], at: dt.datetime) -> list[CloudEvent]:
    traceparent = current_traceparent()
    events = []
    for change in changes:
        payload = BalanceChanged(
            tenant_id=change.tenant_id,
            currency=change.currency,
            available_micros=change.available_micros,
            standing=change.standing.value,
            ledger_sequence=change.ledger_sequence,
            as_of=at,
        )
        for event_type in change.events:
            events.append(
                EVENTS.event(
                    event_type.value,
                    subject=str(change.tenant_id),
                    tenant=str(change.tenant_id),
                    payload=payload,
                    traceparent=traceparent,
                )
            )
    return events


async def announce_standings(
    uow: UnitOfWork,
    tenants: Sequence[TenantLedger],
    at: dt.datetime,
    *,
    only_crossings: bool = False,
) -> list[StandingChange]:
    """Record each tenant's new standing and put its balance events in the outbox.

    With `only_crossings` (the rating path) a tenant whose standing did not change is left
    for the periodic announcer: at rating rates nearly every tenant moves in every batch,
    and one event plus one row update per tenant per batch would halve the throughput.
    Crossings (low, exhausted, and back to ok) are always announced at once."""
    if only_crossings:
        tenants = [t for t in tenants if standing_of_now(t, at) != t.standing]
    changes = standing_changes(tenants, at)
    await LedgerRepository(uow).save_standings(changes)
    await EVENTS.add_events(uow, balance_events(changes, at))
    return changes


def standing_of_now(tenant: TenantLedger, at: dt.datetime) -> Standing:
    return standing_of(tenant.available(at), tenant.low_threshold_micros)


async def announce_moved_balances(db: Database, limit: int = 1000) -> int:
    """The periodic announcer: `billing.balance.changed` for every tenant whose balance moved
    since its last announcement (at most once per tenant per period)."""
    async with db.unit_of_work() as uow:
        repo = LedgerRepository(uow)
        tenant_ids = await repo.tenants_to_announce(limit)
        if not tenant_ids:
            return 0
        ledgers = await repo.tenant_ledgers(await repo.lock_tenants(tenant_ids))
        changes = await announce_standings(uow, list(ledgers.values()), dt.datetime.now(dt.UTC))
        await uow.commit()
    return len(changes)
