"""Price events: every price version is announced once as `billing.price.changed` on
`billing.price.v1` (key = price key), for gpuaas's runway check.

Creating a price announces it in the same transaction. Versions that exist without an
announcement (the public list price book seeded by migration 0004) are announced by
`announce_pending_prices` at start-up. `price_announcements` is the once-only record: the
insert that claims a version returns it only to the transaction that wins its primary key,
so several replicas starting together announce each version once.
"""

from billing.app.events import EVENTS
from billing.store.ledger import LedgerRepository
from gpucloud_contracts.events.billing import PriceChanged
from platformkit.db import Database, UnitOfWork

PRICE_CHANGED = "billing.price.changed"


async def announce_prices(uow: UnitOfWork) -> int:
    """Put a `billing.price.changed` in the outbox for every version not yet announced, in
    the caller's transaction. Returns how many."""
    rows = await LedgerRepository(uow).claim_unannounced_prices()
    events = [
        EVENTS.event(
            PRICE_CHANGED,
            subject=r["price_key"],
            tenant=str(r["tenant_id"]) if r["tenant_id"] else None,
            payload=PriceChanged(
                price_id=r["id"],
                price_key=r["price_key"],
                tenant_id=r["tenant_id"],
                currency=r["currency"].strip(),
                micros_per_hour=r["micros_per_gpu_hour"],
                min_increment_s=r["min_increment_s"],
                effective_from=r["effective_from"],
                version=r["version"],
            ),
        )
        for r in rows
    ]
    await EVENTS.add_events(uow, events)
    return len(events)


async def announce_pending_prices(db: Database) -> int:
    async with db.unit_of_work() as uow:
        count = await announce_prices(uow)
        await uow.commit()
        return count
