"""The public list price book (migration 0004) and `billing.price.changed`: every price
version is announced once through the outbox, seeded ones at start-up, created ones in the
transaction that creates them."""

import datetime as dt
import uuid

import msgspec
import pytest

from billing.app.prices import PRICE_CHANGED, announce_pending_prices
from billing.app.rating import UsageRater
from billing.settings import BillingSettings
from gpucloud_contracts.catalog import topic_for
from gpucloud_contracts.events.billing import PriceChanged

from .conftest import OP, T0, new_tenant, usage_event

pytestmark = pytest.mark.integration

SKUS = ("a100-40gb", "a100-80gb", "h100-80gb", "h200-141gb")


async def _price_events(db) -> list[tuple[str, PriceChanged]]:
    async with db.unit_of_work() as uow:
        rows = await uow.fetch_all(
            "SELECT key, type, payload FROM outbox WHERE topic = :topic ORDER BY id",
            {"topic": topic_for(PRICE_CHANGED)},
        )
    assert all(r.type == PRICE_CHANGED for r in rows)
    return [(r.key, msgspec.json.decode(r.payload, type=PriceChanged)) for r in rows]


async def _list_prices(db) -> dict[str, int]:
    async with db.unit_of_work() as uow:
        rows = await uow.fetch_all(
            "SELECT price_key, micros_per_gpu_hour FROM prices WHERE tenant_id IS NULL"
        )
    return {r.price_key: r.micros_per_gpu_hour for r in rows}


class TestListPriceBook:
    async def test_every_sku_and_mig_profile_has_a_public_price(self, db):
        prices = await _list_prices(db)
        assert len(prices) == len(SKUS) * 8  # whole GPU + 7 MIG profiles each
        assert prices["gpu:h100-80gb"] == 3_600_000
        # pro rata by the larger share of compute (of 7) and memory (of 8), rounded up
        assert prices["mig:h100-80gb:1g.10gb"] == 514_286
        assert prices["mig:h100-80gb:1g.20gb"] == 900_000  # 2/8 memory
        assert prices["mig:h100-80gb:3g.40gb"] == 1_800_000  # 4/8 memory
        assert prices["mig:h100-80gb:7g.80gb"] == prices["gpu:h100-80gb"]
        for sku in SKUS:
            whole = prices[f"gpu:{sku}"]
            for key, micros in prices.items():
                if key.startswith(f"mig:{sku}:"):
                    assert 0 < micros <= whole

    async def test_fresh_platform_rates_usage_at_the_list_price(self, db):
        tenant = await new_tenant(db)
        event = usage_event(tenant, price_key="mig:h100-80gb:1g.10gb", seconds=3600, quantity=2)
        async with db.unit_of_work() as uow:
            stats = await UsageRater(BillingSettings()).rate([event], uow)
            await uow.commit()
        assert (stats.rated, stats.unrated) == (1, 0)
        async with db.unit_of_work() as uow:
            row = await uow.fetch_one(
                "SELECT sum(amount_micros) AS charged FROM transfers WHERE tenant_id = :t",
                {"t": tenant},
            )
        assert row.charged == 2 * 514_286


class TestPriceEvents:
    async def test_seeded_versions_are_announced_once(self, db):
        assert await announce_pending_prices(db) == len(SKUS) * 8
        assert await announce_pending_prices(db) == 0
        events = await _price_events(db)
        assert len(events) == len(SKUS) * 8
        for key, price in events:
            assert key == price.price_key
            assert price.tenant_id is None
            assert price.currency == "USD"
            assert price.effective_from == dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        by_key = {p.price_key: p for _, p in events}
        assert by_key["gpu:h100-80gb"].micros_per_hour == 3_600_000
        assert len({p.version for _, p in events}) == len(events)

    async def test_created_override_is_announced_in_its_transaction(self, client, db):
        # The app's start-up announced the seed; a new version is announced when created.
        seeded = await _price_events(db)
        assert len(seeded) == len(SKUS) * 8
        tenant = uuid.uuid4()
        r = await client.post(
            "/v1/billing/prices",
            headers=OP,
            json={
                "price_key": "gpu:h100-80gb",
                "micros_per_gpu_hour": 2_900_000,
                "effective_from": T0.isoformat(),
                "tenant_id": str(tenant),
                "min_increment_s": 60,
            },
        )
        assert r.status_code == 201, r.text
        events = await _price_events(db)
        assert len(events) == len(seeded) + 1
        key, price = events[-1]
        assert key == "gpu:h100-80gb"
        assert price.price_id == uuid.UUID(r.json()["id"])
        assert (price.tenant_id, price.micros_per_hour, price.min_increment_s) == (
            tenant,
            2_900_000,
            60,
        )
        assert price.effective_from == T0
        assert price.version > max(p.version for _, p in seeded)

    async def test_refused_version_announces_nothing(self, client, db):
        body = {
            "price_key": "gpu:h100-80gb",
            "micros_per_gpu_hour": 1,
            "effective_from": "2020-01-01T00:00:00Z",
        }
        before = len(await _price_events(db))
        r = await client.post("/v1/billing/prices", headers=OP, json=body)
        assert r.status_code == 409  # the list price already takes effect then
        assert len(await _price_events(db)) == before
