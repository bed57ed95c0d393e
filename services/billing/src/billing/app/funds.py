"""Movements besides rating: top-ups, promotional grants, grant expiry, reversals, prices.

Each is one transaction: lock the tenant (the same lock rating takes, so a movement and a
rating batch of one tenant never interleave), insert the transfers (cached balances move in
the same statement), then record the standing and put the balance events in the outbox.
"""

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable

import msgspec
from sqlalchemy.exc import IntegrityError

from billing.app.balances import announce_standings
from billing.app.prices import announce_prices
from billing.domain.ledger import (
    AccountKind,
    Transfer,
    TransferKind,
    platform_account_id,
    reversing,
    wallet_id,
)
from billing.domain.pricing import PriceVersion
from billing.store.ledger import DuplicateTransfer, LedgerRepository, TransferColumns
from platformkit import idempotency
from platformkit.db import Database, UnitOfWork
from platformkit.errors import Conflict, NotFound, ValidationFailed
from platformkit.ids import uuid7

_MAX_MICROS = 10**15


@dataclasses.dataclass(frozen=True)
class TopUp:
    tenant_id: uuid.UUID
    amount_micros: int
    reference: str | None = None


@dataclasses.dataclass(frozen=True)
class GrantCredit:
    tenant_id: uuid.UUID
    amount_micros: int
    expires_at: dt.datetime
    priority: int = 0


def _check_amount(amount: int) -> None:
    if not 0 < amount <= _MAX_MICROS:
        raise ValidationFailed.for_field("amount_micros", f"must be 1 to {_MAX_MICROS}")


async def _locked_tenant(repo: LedgerRepository, tenant_id: uuid.UUID):
    locked = await repo.lock_tenants([tenant_id])
    if tenant_id not in locked:
        raise NotFound(f"tenant {tenant_id} is not known to billing")
    return locked


async def post_and_announce(
    uow: UnitOfWork, tenant_id: uuid.UUID, columns: TransferColumns
) -> None:
    repo = LedgerRepository(uow)
    await repo.post(columns)
    ledgers = await repo.tenant_ledgers(await repo.lock_tenants([tenant_id]))
    await announce_standings(uow, list(ledgers.values()), dt.datetime.now(dt.UTC))


async def idempotent(
    db: Database,
    scope: str,
    key: str | None,
    request: object,
    work: Callable[[UnitOfWork], object],
) -> tuple[int, bytes]:
    """Run `work` once per Idempotency-Key: same key and body replays the stored response."""
    body_hash = idempotency.request_hash(msgspec.json.encode(request))
    async with db.unit_of_work() as uow:
        if key:
            stored = await idempotency.find(uow, scope, key, body_hash)
            if stored is not None:
                return stored.status, stored.body
        result = await work(uow)  # type: ignore[misc]
        body = msgspec.json.encode(result)
        if key:
            await idempotency.remember(uow, scope, key, body_hash, 201, body)
        await uow.commit()
    return 201, body


async def top_up(uow: UnitOfWork, command: TopUp) -> Transfer:
    """Credit a tenant's wallet from payment clearing (a settled payment, or a manual
    booking by an operator)."""
    _check_amount(command.amount_micros)
    repo = LedgerRepository(uow)
    locked = await _locked_tenant(repo, command.tenant_id)
    currency = locked[command.tenant_id]["currency"]
    tx = uuid7()
    transfer = Transfer(
        id=tx,
        transaction_id=tx,
        debit_account_id=platform_account_id(AccountKind.CLEARING, currency),
        credit_account_id=wallet_id(command.tenant_id, currency),
        amount_micros=command.amount_micros,
        currency=currency,
        kind=TransferKind.TOP_UP,
        tenant_id=command.tenant_id,
        occurred_at=dt.datetime.now(dt.UTC),
    )
    columns = TransferColumns()
    columns.add(transfer)
    await post_and_announce(uow, command.tenant_id, columns)
    return transfer


async def grant_credit(uow: UnitOfWork, command: GrantCredit) -> tuple[uuid.UUID, Transfer]:
    """Open a promotional account for the grant and fund it from promo_funding."""
    _check_amount(command.amount_micros)
    now = dt.datetime.now(dt.UTC)
    if command.expires_at <= now:
        raise ValidationFailed.for_field("expires_at", "must be in the future")
    repo = LedgerRepository(uow)
    locked = await _locked_tenant(repo, command.tenant_id)
    currency = locked[command.tenant_id]["currency"]
    grant_id = uuid7()
    await uow.execute(
        "INSERT INTO accounts (id, tenant_id, kind, currency, priority, expires_at)"
        " VALUES (:id, :tenant, 'promo', :currency, :priority, :expires_at)",
        {
            "id": grant_id,
            "tenant": command.tenant_id,
            "currency": currency,
            "priority": command.priority,
            "expires_at": command.expires_at,
        },
    )
    transfer = Transfer(
        id=grant_id,
        transaction_id=grant_id,
        debit_account_id=platform_account_id(AccountKind.PROMO_FUNDING, currency),
        credit_account_id=grant_id,
        amount_micros=command.amount_micros,
        currency=currency,
        kind=TransferKind.GRANT,
        tenant_id=command.tenant_id,
        occurred_at=now,
    )
    columns = TransferColumns()
    columns.add(transfer)
    await post_and_announce(uow, command.tenant_id, columns)
    return grant_id, transfer


async def expire_grants(db: Database, now: dt.datetime | None = None) -> int:
    """Return what is left of every expired grant to promo_funding, one tenant per
    transaction. Grants are re-read under the tenant's lock, so a concurrent or repeated
    sweep finds nothing left to expire."""
    now = now or dt.datetime.now(dt.UTC)
    async with db.unit_of_work() as uow:
        rows = await uow.fetch_all(
            "SELECT DISTINCT tenant_id FROM accounts WHERE kind = 'promo'"
            " AND expires_at <= :now AND credits_posted > debits_posted",
            {"now": now},
        )
    expired = 0
    for row in rows:
        async with db.unit_of_work() as uow:
            repo = LedgerRepository(uow)
            await repo.lock_tenants([row["tenant_id"]])
            grants = await uow.fetch_all(
                "SELECT id, currency, credits_posted - debits_posted AS left_micros"
                " FROM accounts WHERE tenant_id = :t AND kind = 'promo'"
                " AND expires_at <= :now AND credits_posted > debits_posted",
                {"t": row["tenant_id"], "now": now},
            )
            columns = TransferColumns()
            for grant in grants:
                tid = uuid7()
                columns.add(
                    Transfer(
                        id=tid,
                        transaction_id=tid,
                        debit_account_id=grant["id"],
                        credit_account_id=platform_account_id(
                            AccountKind.PROMO_FUNDING, grant["currency"]
                        ),
                        amount_micros=grant["left_micros"],
                        currency=grant["currency"],
                        kind=TransferKind.EXPIRY,
                        tenant_id=row["tenant_id"],
                        occurred_at=now,
                    )
                )
            if columns.id:
                await post_and_announce(uow, row["tenant_id"], columns)
                await uow.commit()
                expired += len(columns.id)
    return expired


async def reverse_transaction(uow: UnitOfWork, transaction_id: uuid.UUID) -> list[Transfer]:
    """Correct a transaction by reversing every transfer of it (never by editing it)."""
    legs = await uow.fetch_all(
        "SELECT id, transaction_id, debit_account_id, credit_account_id, amount_micros,"
        " currency, kind, tenant_id, leg, occurred_at FROM transfers"
        " WHERE transaction_id = :tx ORDER BY leg",
        {"tx": transaction_id},
    )
    if not legs:
        raise NotFound(f"transaction {transaction_id} not found")
    if any(leg["kind"] == TransferKind.REVERSAL for leg in legs):
        raise Conflict("a reversal cannot be reversed; post a new movement instead")
    tenant_id = legs[0]["tenant_id"]
    await _locked_tenant(LedgerRepository(uow), tenant_id)
    reversal_tx = uuid.uuid5(transaction_id, "reversal")
    now = dt.datetime.now(dt.UTC)
    reversals = [
        reversing(
            Transfer(
                id=leg["id"],
                transaction_id=leg["transaction_id"],
                debit_account_id=leg["debit_account_id"],
                credit_account_id=leg["credit_account_id"],
                amount_micros=leg["amount_micros"],
                currency=leg["currency"],
                kind=TransferKind(leg["kind"]),
                tenant_id=leg["tenant_id"],
                occurred_at=leg["occurred_at"],
                leg=leg["leg"],
            ),
            reversal_tx,
            now,
        )
        for leg in legs
    ]
    columns = TransferColumns()
    for transfer in reversals:
        columns.add(transfer)
    try:
        async with uow.session.begin_nested():
            await post_and_announce(uow, tenant_id, columns)
    except DuplicateTransfer:
        raise Conflict(f"transaction {transaction_id} is already reversed") from None
    except IntegrityError:
        raise Conflict(
            "the reversal would take more from a promotional grant than it holds"
        ) from None
    return reversals


async def add_price(uow: UnitOfWork, version: PriceVersion) -> uuid.UUID:
    if version.micros_per_gpu_hour < 0:
        raise ValidationFailed.for_field("micros_per_gpu_hour", "must be >= 0")
    if version.min_increment_s < 1:
        raise ValidationFailed.for_field("min_increment_s", "must be >= 1")
    price_id = uuid7()
    try:
        async with uow.session.begin_nested():
            await uow.execute(
                "INSERT INTO prices (id, price_key, currency, tenant_id, micros_per_gpu_hour,"
                " min_increment_s, effective_from) VALUES (:id, :key, :currency, :tenant,"
                " :micros, :inc, :from)",
                {
                    "id": price_id,
                    "key": version.price_key,
                    "currency": version.currency,
                    "tenant": version.tenant_id,
                    "micros": version.micros_per_gpu_hour,
                    "inc": version.min_increment_s,
                    "from": version.effective_from,
                },
            )
    except IntegrityError:
        raise Conflict("a version of this price already takes effect at that time") from None
    await announce_prices(uow)
    return price_id
