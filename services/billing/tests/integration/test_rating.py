"""Rating on real PostgreSQL (no Kafka in the loop): pricing, splitting, deduplication,
late intervals, corrections, balance events, the database's own guarantees."""

import datetime as dt
import json
import uuid

import psycopg
import pytest

from billing.app.balances import announce_moved_balances
from billing.app.funds import GrantCredit, TopUp, grant_credit, reverse_transaction, top_up
from billing.app.rating import UsageRater
from billing.app.verify import verify_ledger
from billing.settings import BillingSettings

from .conftest import T0, set_price, usage_event

pytestmark = pytest.mark.integration
SETTINGS = BillingSettings(low_threshold_micros=1_000_000)


async def _rate(db, events):
    rater = UsageRater(SETTINGS)
    async with db.unit_of_work() as uow:
        stats = await rater.rate(events, uow)
        await uow.commit()
    return stats


async def _balance(db, tenant):
    async with db.unit_of_work() as uow:
        row = await uow.fetch_one(
            "SELECT coalesce(sum(credits_posted - debits_posted), 0) AS b FROM accounts"
            " WHERE tenant_id = :t",
            {"t": tenant},
        )
    return row["b"]


async def _outbox(db, tenant):
    async with db.unit_of_work() as uow:
        rows = await uow.fetch_all(
            "SELECT type FROM outbox WHERE subject = :t ORDER BY seq", {"t": str(tenant)}
        )
    return [r["type"] for r in rows]


class TestRateUsage:
    async def test_interval_is_charged_to_the_wallet_and_credited_to_revenue(self, db):
        await set_price(db, "gpu:h100", 3_600_000)  # 1000 micros per GPU-second
        tenant = uuid.uuid4()
        stats = await _rate(db, [usage_event(tenant, seconds=90, quantity=2)])
        assert (stats.rated, stats.transfers) == (1, 1)
        assert await _balance(db, tenant) == -180_000
        assert (await verify_ledger(db)).ok

    async def test_duplicates_in_and_across_batches_change_nothing(self, db):
        await set_price(db, "gpu:h100", 3_600_000)
        tenant, allocation = uuid.uuid4(), uuid.uuid4()
        first = usage_event(tenant, allocation=allocation, sequence=0)
        # a re-emission of the same interval carries a new CloudEvents id
        again = usage_event(tenant, allocation=allocation, sequence=0)
        assert first.id != again.id
        stats = await _rate(db, [first, again])
        assert (stats.rated, stats.duplicates) == (1, 1)
        stats = await _rate(db, [again, first])
        assert (stats.rated, stats.duplicates) == (0, 2)
        assert await _balance(db, tenant) == -60_000

    async def test_late_interval_is_rated_at_its_own_time_price(self, db):
        await set_price(db, "gpu:h100", 3_600_000)
        await set_price(db, "gpu:h100", 7_200_000, at=T0 + dt.timedelta(days=1))
        tenant = uuid.uuid4()
        new = usage_event(tenant, started_at=T0 + dt.timedelta(days=2))
        late = usage_event(tenant, started_at=T0 + dt.timedelta(hours=3))
        await _rate(db, [new])
        await _rate(db, [late])
        assert await _balance(db, tenant) == -(120_000 + 60_000)

    async def test_tenant_override_and_minimum_increment(self, db):
        tenant = uuid.uuid4()
        await set_price(db, "gpu:h100", 3_600_000)
        await set_price(db, "gpu:h100", 1_800_000, tenant_id=tenant, min_increment_s=60)
        await _rate(db, [usage_event(tenant, seconds=61)])  # 120 s at 500 micros/s
        assert await _balance(db, tenant) == -60_000

    async def test_unpriced_usage_is_kept_aside_not_lost(self, db):
        tenant = uuid.uuid4()
        stats = await _rate(db, [usage_event(tenant, price_key="mig:h100:1g.10gb")])
        assert stats.unrated == 1
        async with db.unit_of_work() as uow:
            row = await uow.fetch_one("SELECT count(*) AS n FROM unrated_usage")
        assert row["n"] == 1

    async def test_grants_pay_first_then_the_wallet_and_standing_events_fire_once(self, db):
        await set_price(db, "gpu:h100", 3_600_000)
        tenant = uuid.uuid4()
        await _rate(db, [usage_event(tenant, seconds=1)])  # opens the tenant, -1000
        async with db.unit_of_work() as uow:
            await top_up(uow, TopUp(tenant, 1_501_000))  # available 1.5 -> ok
            await grant_credit(
                uow, GrantCredit(tenant, 100_000, T0 + dt.timedelta(days=365), priority=1)
            )
            await uow.commit()
        # 600 s = 600_000: grant pays 100_000, the wallet 500_000 -> available 1.0 -> low
        stats = await _rate(db, [usage_event(tenant, seconds=600)])
        assert stats.transfers == 2
        await _rate(db, [usage_event(tenant, seconds=1)])  # still low: no second `low`
        await _rate(db, [usage_event(tenant, seconds=2000)])  # crosses zero: exhausted
        await _rate(db, [usage_event(tenant, seconds=10)])  # stays exhausted
        events = await _outbox(db, tenant)
        assert events.count("billing.balance.low") == 1
        assert events.count("billing.balance.exhausted") == 1
        assert events.index("billing.balance.low") < events.index("billing.balance.exhausted")
        assert (await verify_ledger(db)).ok


class TestBalanceAnnouncer:
    async def test_moved_balances_are_announced_once_per_period(self, db):
        await set_price(db, "gpu:h100", 3_600_000)
        tenant = uuid.uuid4()
        await _rate(db, [usage_event(tenant, seconds=1)])  # opens it exhausted: no crossing
        assert await _outbox(db, tenant) == []
        assert await announce_moved_balances(db) == 1
        async with db.unit_of_work() as uow:
            await top_up(uow, TopUp(tenant, 50_000_000))  # announced in its own transaction
            await uow.commit()
        await _rate(db, [usage_event(tenant, seconds=2)])  # still ok: left for the announcer
        assert await _outbox(db, tenant) == ["billing.balance.changed"] * 2
        assert await announce_moved_balances(db) == 1
        assert await announce_moved_balances(db) == 0  # nothing moved since
        async with db.unit_of_work() as uow:
            row = await uow.fetch_one(
                "SELECT payload FROM outbox WHERE subject = :t ORDER BY seq DESC LIMIT 1",
                {"t": str(tenant)},
            )
        last = json.loads(bytes(row["payload"]))
        assert last["available_micros"] == 50_000_000 - 3000
        assert last["standing"] == "ok" and last["ledger_sequence"] == 3


class TestCorrections:
    async def test_reversal_restores_balances_and_cannot_repeat(self, db):
        await set_price(db, "gpu:h100", 3_600_000)
        tenant = uuid.uuid4()
        event = usage_event(tenant, seconds=60)
        await _rate(db, [event])
        interval_id = uuid.UUID(json.loads(event.data)["interval_id"])
        async with db.unit_of_work() as uow:
            await reverse_transaction(uow, interval_id)
            await uow.commit()
        assert await _balance(db, tenant) == 0
        with pytest.raises(Exception, match="already reversed"):
            async with db.unit_of_work() as uow:
                await reverse_transaction(uow, interval_id)
        assert (await verify_ledger(db)).ok


class TestDatabaseGuarantees:
    async def test_transfers_cannot_be_updated_or_deleted(self, db, billing_url):
        await set_price(db, "gpu:h100", 3_600_000)
        await _rate(db, [usage_event(uuid.uuid4())])
        with psycopg.connect(billing_url) as conn:
            for sql in ("UPDATE transfers SET amount_micros = 1", "DELETE FROM transfers"):
                with pytest.raises(psycopg.errors.RestrictViolation):
                    conn.execute(sql)
                conn.rollback()

    async def test_a_transfer_mixing_currencies_is_refused(self, db, billing_url):
        await set_price(db, "gpu:h100", 3_600_000)
        await _rate(db, [usage_event(uuid.uuid4())])
        with psycopg.connect(billing_url) as conn:
            (debit,) = conn.execute("SELECT id FROM accounts WHERE kind = 'wallet'").fetchone()
            (credit,) = conn.execute("SELECT id FROM accounts WHERE kind = 'revenue'").fetchone()
            with pytest.raises(psycopg.errors.ForeignKeyViolation):
                conn.execute(
                    "INSERT INTO transfers (id, transaction_id, debit_account_id,"
                    " credit_account_id, amount_micros, currency, kind, tenant_id,"
                    " occurred_at, tenant_seq) VALUES (gen_random_uuid(), gen_random_uuid(),"
                    " %s, %s, 5, 'EUR', 'usage', gen_random_uuid(), now(), 1)",
                    (debit, credit),
                )

    async def test_verify_reports_a_cached_balance_that_drifted(self, db, billing_url):
        await set_price(db, "gpu:h100", 3_600_000)
        await _rate(db, [usage_event(uuid.uuid4())])
        with psycopg.connect(billing_url) as conn:
            conn.execute(
                "UPDATE accounts SET debits_posted = debits_posted + 7 WHERE kind = 'wallet'"
            )
        report = await verify_ledger(db)
        assert not report.ok
        assert [d.kind for d in report.differences] == ["wallet"]
        assert report.differences[0].cached_debits == report.differences[0].derived_debits + 7
