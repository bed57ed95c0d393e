"""Property, on the production posting path: random sequences of top-ups, grants, rated
usage, reversals and grant expiries, each through the use case the API or the consumer
runs (billing.app.funds, billing.app.rating) and the SQL of store/ledger.py, on real
PostgreSQL. After every step the books are read back with plain SQL written here:

- every account's cached debits/credits equal the sums of the transfers naming it;
- every currency's accounts sum to zero, and no promotional account is below zero;
- each rated interval's legs take exactly its price (1,000 micros a second) from the
  tenant's promotional accounts and wallet together;
- a refused step (a reversal of what is already reversed, or that would take more from a
  grant than it holds) leaves no transfer behind.

Seeded (random.Random(seed)), so a failure names the seed that replays it."""

import datetime as dt
import random
import uuid

import pytest

from billing.app.funds import (
    GrantCredit,
    TopUp,
    expire_grants,
    grant_credit,
    reverse_transaction,
    top_up,
)
from billing.app.rating import UsageRater
from billing.settings import BillingSettings
from platformkit.db import Database
from platformkit.errors import Conflict

from .conftest import new_tenant, set_price, usage_event

pytestmark = pytest.mark.integration

PRICE_KEY = "gpu:property"
MICROS_PER_SECOND = 1_000  # 3.60 per GPU-hour
SEEDS = range(12)
STEPS = 14


async def _books(db: Database) -> tuple[list[str], dict]:
    """Independent read-back: what is wrong with the books (empty: nothing)."""
    problems: list[str] = []
    async with db.unit_of_work() as uow:
        accounts = await uow.fetch_all(
            "SELECT id, kind, currency, debits_posted, credits_posted FROM accounts"
        )
        transfers = await uow.fetch_all(
            "SELECT id, transaction_id, debit_account_id, credit_account_id, amount_micros,"
            " kind FROM transfers"
        )
    debits: dict[uuid.UUID, int] = {}
    credits: dict[uuid.UUID, int] = {}
    for t in transfers:
        if t["amount_micros"] <= 0:
            problems.append(f"transfer {t['id']} moves {t['amount_micros']}")
        debits[t["debit_account_id"]] = debits.get(t["debit_account_id"], 0) + t["amount_micros"]
        credits[t["credit_account_id"]] = (
            credits.get(t["credit_account_id"], 0) + t["amount_micros"]
        )
    net: dict[str, int] = {}
    for a in accounts:
        if (a["debits_posted"], a["credits_posted"]) != (
            debits.get(a["id"], 0),
            credits.get(a["id"], 0),
        ):
            problems.append(
                f"{a['kind']} {a['id']}: cached {a['debits_posted']}/{a['credits_posted']},"
                f" transfers say {debits.get(a['id'], 0)}/{credits.get(a['id'], 0)}"
            )
        balance = a["credits_posted"] - a["debits_posted"]
        if a["kind"] == "promo" and balance < 0:
            problems.append(f"promo {a['id']} at {balance}")
        net[a["currency"]] = net.get(a["currency"], 0) + balance
    problems += [f"{currency} sums to {n}" for currency, n in net.items() if n]
    return problems, {t["transaction_id"]: t for t in transfers}


async def _transfers_of(db: Database, transaction_id: uuid.UUID) -> list:
    async with db.unit_of_work() as uow:
        return await uow.fetch_all(
            "SELECT amount_micros, kind, debit_account_id FROM transfers WHERE transaction_id = :t",
            {"t": transaction_id},
        )


async def test_any_sequence_keeps_the_posted_books_true(db: Database):
    await set_price(db, PRICE_KEY, MICROS_PER_SECOND * 3600)
    rater = UsageRater(BillingSettings())
    charges_seen: set[uuid.UUID] = set()
    for seed in SEEDS:
        rng = random.Random(seed)
        tenant = await new_tenant(db)
        posted: list[uuid.UUID] = []  # transaction ids, for reversals
        started = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
        for step in range(STEPS):
            op = rng.choice(["top_up", "grant", "usage", "usage", "reverse", "expire"])
            where = f"seed {seed} step {step} {op}"
            if op == "top_up":
                async with db.unit_of_work() as uow:
                    transfer = await top_up(uow, TopUp(tenant, rng.randrange(1, 50_000)))
                    await uow.commit()
                posted.append(transfer.transaction_id)
            elif op == "grant":
                expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=rng.randrange(1, 30))
                command = GrantCredit(
                    tenant, rng.randrange(1, 30_000), expires, priority=rng.randrange(3)
                )
                async with db.unit_of_work() as uow:
                    grant = await grant_credit(uow, command)
                    await uow.commit()
                posted.append(grant.transfer.transaction_id)
            elif op == "usage":
                seconds = rng.randrange(1, 40)
                event = usage_event(
                    tenant, seconds=seconds, started_at=started, price_key=PRICE_KEY
                )
                started += dt.timedelta(seconds=seconds)
                async with db.unit_of_work() as uow:
                    await rater.rate([event], uow)
                    await uow.commit()
                _, by_transaction = await _books(db)
                charged = [
                    t
                    for t in by_transaction.values()
                    if t["kind"] == "usage" and t["transaction_id"] not in charges_seen
                ]
                assert len(charged) == 1, where
                charges_seen.add(charged[0]["transaction_id"])
                legs = await _transfers_of(db, charged[0]["transaction_id"])
                assert sum(leg["amount_micros"] for leg in legs) == seconds * MICROS_PER_SECOND, (
                    where
                )
                posted.append(charged[0]["transaction_id"])
            elif op == "reverse" and posted:
                target = rng.choice(posted)
                reversal = uuid.uuid5(target, "reversal")
                before = await _transfers_of(db, reversal)
                try:
                    async with db.unit_of_work() as uow:
                        await reverse_transaction(uow, target)
                        await uow.commit()
                except Conflict:
                    # refused: nothing of it was posted (an earlier reversal may stand)
                    assert await _transfers_of(db, reversal) == before, where
            elif op == "expire":
                await expire_grants(db, dt.datetime.now(dt.UTC) + dt.timedelta(days=60))
            problems, _ = await _books(db)
            assert problems == [], f"{where}: {problems}"
