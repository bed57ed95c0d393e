"""Price events: every price version is announced once as `billing.price.changed` on
`billing.price.v1` (key = price key), for gpuaas's runway check.

Creating a price announces it in the same transaction. Versions that exist without an
announcement (the public list price book seeded by migration 0004) are announced by
`announce_pending_prices` at start-up. `price_announcements` is the once-only record: the
insert that claims a version returns it only to the transaction that wins its primary key,
so several replicas starting together announce each version once.
"""

from sqlalchemy import text

from gpucloud_contracts.events.billing import PriceChanged
from platformkit.db import Database, UnitOfWork
from platformkit.envelope import new_event
from platformkit.outbox import add_events
from platformkit.telemetry import current_traceparent

PRICE_TOPIC = "billing.price.v1"
PRICE_CHANGED = "billing.price.changed"
SOURCE = "billing"

# Claim every version not yet announced, oldest first, and return what was claimed.
_CLAIM = text(
    "WITH claimed AS ("
    " INSERT INTO price_announcements (price_id)"
    " SELECT id FROM prices p WHERE NOT EXISTS"
    " (SELECT 1 FROM price_announcements a WHERE a.price_id = p.id)"
    " ORDER BY version ON CONFLICT (price_id) DO NOTHING RETURNING price_id)"
    " SELECT p.id, p.price_key, p.tenant_id, p.currency, p.micros_per_gpu_hour,"
    " p.min_increment_s, p.effective_from, p.version"
    " FROM prices p JOIN claimed c ON c.price_id = p.id ORDER BY p.version"
)


async def announce_prices(uow: UnitOfWork) -> int:
    """Put a `billing.price.changed` in the outbox for every version not yet announced, in
    the caller's transaction. Returns how many."""
    rows = (await uow.session.execute(_CLAIM)).mappings().all()
    traceparent = current_traceparent()
    events = [
        new_event(
            type=PRICE_CHANGED,
            source=SOURCE,
            subject=r["price_key"],
            tenant=str(r["tenant_id"]) if r["tenant_id"] else None,
            traceparent=traceparent,
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
    await add_events(uow, PRICE_TOPIC, events)
    return len(events)


async def announce_pending_prices(db: Database) -> int:
    async with db.unit_of_work() as uow:
        count = await announce_prices(uow)
        await uow.commit()
        return count
