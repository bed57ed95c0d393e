"""Ledger verification: every cached balance recomputed from the transfers, and every
currency's accounts summing to zero. Read-only, in one repeatable-read snapshot."""

import dataclasses

from billing.store.ledger import LedgerCheck
from platformkit.db import Database


@dataclasses.dataclass(frozen=True)
class AccountDifference:
    account_id: str
    kind: str | None
    tenant_id: str | None
    cached_debits: int | None
    cached_credits: int | None
    derived_debits: int
    derived_credits: int


@dataclasses.dataclass(frozen=True)
class CurrencyTotal:
    currency: str
    net_micros: int
    accounts: int


@dataclasses.dataclass(frozen=True)
class Verification:
    ok: bool
    transfers: int
    differences: list[AccountDifference]
    currencies: list[CurrencyTotal]


async def verify_ledger(db: Database) -> Verification:
    async with db.unit_of_work(snapshot=True) as uow:
        check = LedgerCheck(uow)
        differences = [
            AccountDifference(
                account_id=str(r["account_id"]),
                kind=r["kind"],
                tenant_id=str(r["tenant_id"]) if r["tenant_id"] else None,
                cached_debits=r["debits_posted"],
                cached_credits=r["credits_posted"],
                derived_debits=r["derived_debits"],
                derived_credits=r["derived_credits"],
            )
            for r in await check.account_differences()
        ]
        currencies = [
            CurrencyTotal(r["currency"], r["net"], r["accounts"])
            for r in await check.currency_totals()
        ]
        transfers = await check.transfer_count()
    ok = not differences and all(c.net_micros == 0 for c in currencies)
    return Verification(ok, transfers, differences, currencies)
