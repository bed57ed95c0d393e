"""Read use cases: a tenant's balance, ledger entries, usage per project, the price book."""

import dataclasses
import datetime as dt
import uuid
from typing import Any

from billing.domain.ledger import Account, AccountKind, available_micros
from billing.store.reads import BillingReads
from platformkit.db import Database
from platformkit.errors import NotFound, ValidationFailed


@dataclasses.dataclass(frozen=True)
class Balance:
    tenant: Any
    wallet: Account
    grants: list[Account]
    available_micros: int


async def get_balance(db: Database, tenant_id: uuid.UUID) -> Balance:
    async with db.unit_of_work() as uow:
        reads = BillingReads(uow)
        tenant = await reads.tenant(tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id} is not known to billing")
        rows = await reads.accounts(tenant_id)
    accounts = [
        Account(
            id=r["id"],
            kind=AccountKind(r["kind"]),
            currency=r["currency"],
            tenant_id=tenant_id,
            priority=r["priority"],
            expires_at=r["expires_at"],
            debits_posted=r["debits_posted"],
            credits_posted=r["credits_posted"],
        )
        for r in rows
    ]
    wallet = next(a for a in accounts if a.kind == AccountKind.WALLET)
    grants = [a for a in accounts if a.kind == AccountKind.PROMO]
    now = dt.datetime.now(dt.UTC)
    return Balance(tenant, wallet, grants, available_micros(wallet, grants, now))


async def list_entries(db: Database, tenant_id: uuid.UUID, after: int, limit: int) -> list[Any]:
    async with db.unit_of_work() as uow:
        if await BillingReads(uow).tenant(tenant_id) is None:
            raise NotFound(f"tenant {tenant_id} is not known to billing")
        return await BillingReads(uow).entries(tenant_id, after, limit)


def month_start(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def usage_report(
    db: Database, tenant_id: uuid.UUID, since: dt.datetime | None, until: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime, list[Any]]:
    now = dt.datetime.now(dt.UTC)
    since = since or month_start(now)
    until = until or now
    if since.tzinfo is None or until.tzinfo is None:
        raise ValidationFailed.for_field("since", "since and until need a time zone")
    if until <= since:
        raise ValidationFailed.for_field("until", "must be after since")
    async with db.unit_of_work() as uow:
        rows = await BillingReads(uow).usage_by_project(tenant_id, since, until)
    return since, until, rows


async def list_prices(db: Database, tenant_id: uuid.UUID | None) -> list[Any]:
    async with db.unit_of_work() as uow:
        return await BillingReads(uow).prices(tenant_id)
