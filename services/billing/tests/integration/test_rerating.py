"""Usage that arrives with no price in effect is parked, never dropped and never priced at
0; once a price covering its start exists it is rated at the version in effect at its
start, once, whoever re-rates it and however often it is redelivered."""

import datetime as dt

import pytest

from billing.app.rating import UsageRater
from billing.app.rerating import RerateResult, rerate_parked
from billing.app.verify import verify_ledger
from billing.settings import BillingSettings

from .conftest import OP, as_tenant, new_tenant, set_price, usage_event

pytestmark = pytest.mark.integration

KEY = "gpu:b200-192gb"  # not in the list price book
START = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


async def _rate(db, events):
    async with db.unit_of_work() as uow:
        stats = await UsageRater(BillingSettings()).rate(events, uow)
        await uow.commit()
    return stats


async def _charged(db, tenant) -> int:
    async with db.unit_of_work() as uow:
        row = await uow.fetch_one(
            "SELECT coalesce(sum(amount_micros), 0) AS s FROM transfers"
            " WHERE tenant_id = :t AND kind = 'usage'",
            {"t": tenant},
        )
    return row.s


async def _parked(client, **params):
    r = await client.get("/v1/billing/unrated", headers=OP, params=params)
    assert r.status_code == 200, r.text
    return r.json()


class TestRerating:
    async def test_parked_until_a_covering_price_then_rated_at_its_start_price(self, client, db):
        tenant = await new_tenant(db)
        event = usage_event(tenant, price_key=KEY, started_at=START, seconds=3600)
        stats = await _rate(db, [event])
        assert (stats.rated, stats.unrated) == (0, 1)
        parked = await _parked(client)
        assert [(p["tenant_id"], p["price_key"]) for p in parked] == [(str(tenant), KEY)]
        assert await _charged(db, tenant) == 0

        # a price from after the interval's start does not cover it
        await set_price(db, KEY, 9_000_000, at=START + dt.timedelta(minutes=1))
        assert await rerate_parked(db, BillingSettings()) == RerateResult(0, 0)
        assert len(await _parked(client)) == 1

        # a version in effect at its start appears: rated at that version, not the later one
        await set_price(db, KEY, 5_000_000, at=START - dt.timedelta(days=1))
        r = await client.post("/v1/billing/unrated/rerate", headers=OP)
        assert r.status_code == 200 and r.json() == {"rated": 1, "still_unrated": 0}
        assert await _charged(db, tenant) == 5_000_000
        assert await _parked(client) == []
        kept = await _parked(client, include_rated="true", tenant_id=str(tenant))
        assert len(kept) == 1 and kept[0]["rated_at"] is not None

        # again, and a redelivery of the same interval: nothing more is charged
        assert await rerate_parked(db, BillingSettings()) == RerateResult(0, 0)
        assert (await _rate(db, [event])).duplicates == 1
        assert await _charged(db, tenant) == 5_000_000
        assert (await verify_ledger(db)).ok

    async def test_an_override_covers_only_its_tenant(self, client, db):
        covered, other = await new_tenant(db), await new_tenant(db)
        await _rate(
            db,
            [
                usage_event(covered, price_key=KEY, started_at=START, seconds=60),
                usage_event(other, price_key=KEY, started_at=START, seconds=60),
            ],
        )
        await set_price(db, KEY, 3_600_000, at=START, tenant_id=covered)
        result = await rerate_parked(db, BillingSettings())
        assert (result.rated, result.still_unrated) == (1, 0)
        assert await _charged(db, covered) == 60_000
        assert await _charged(db, other) == 0
        assert [p["tenant_id"] for p in await _parked(client)] == [str(other)]

    async def test_interval_rated_meanwhile_leaves_the_queue_uncharged_twice(self, client, db):
        tenant = await new_tenant(db)
        event = usage_event(tenant, price_key=KEY, started_at=START, seconds=60)
        await _rate(db, [event])
        await set_price(db, KEY, 3_600_000, at=START)
        # Kafka redelivers it (a replay) and rating prices it before the re-rater runs
        assert (await _rate(db, [event])).rated == 1
        result = await rerate_parked(db, BillingSettings())
        assert (result.rated, result.still_unrated) == (1, 0)  # left the queue...
        assert await _charged(db, tenant) == 60_000  # ...charged once
        assert await _parked(client) == []

    async def test_only_the_operator_lists_parked_usage(self, client, db):
        tenant = await new_tenant(db)
        r = await client.get("/v1/billing/unrated", headers=as_tenant(tenant, "admin"))
        assert r.status_code == 403
        r = await client.post("/v1/billing/unrated/rerate", headers=as_tenant(tenant, "admin"))
        assert r.status_code == 403
