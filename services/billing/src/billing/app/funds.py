"""Movements besides rating: top-ups, promotional grants, grant expiry, reversals, prices.

Each is one transaction: lock the tenant (the same lock rating takes, so a movement and a
rating batch of one tenant never interleave), insert the transfers (cached balances move in
the same statement), then record the standing and put the balance events in the outbox.
"""

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Protocol, TypeVar

from billing.app.balances import announce_standings
from billing.app.events import EVENTS
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
from billing.store.ledger import (
    DuplicateTransfer,
    LedgerRepository,
    Overdrawn,
    PriceExists,
    TransferColumns,
)
from gpucloud_contracts.events.billing import CreditGranted, TransactionReversed
from platformkit.db import Database, UnitOfWork
from platformkit.errors import Conflict, NotFound, ValidationFailed
from platformkit.idempotency import IdempotentRequest, StoredResponse, run_once
from platformkit.ids import uuid7

_MAX_MICROS = 10**15
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Movement(Protocol[T_co]):
    """An operator's movement, run once per Idempotency-Key by `record`."""

    idempotency_key: str | None

    @property
    def scope(self) -> str: ...

    def fingerprint(self) -> object: ...

    async def apply(self, uow: UnitOfWork) -> T_co: ...


async def record(
    db: Database, command: Movement[T], encode: Callable[[T], StoredResponse]
) -> StoredResponse:
    """Run the movement in one transaction, once per Idempotency-Key: the API's encoding of
    its result is stored (and committed) with it and replayed for the same key and body."""
    request = IdempotentRequest.of(command.scope, command.idempotency_key, command.fingerprint())
    return await run_once(db, request, command.apply, encode)


@dataclasses.dataclass(frozen=True)
class TopUp:
    tenant_id: uuid.UUID
    amount_micros: int
    reference: str | None = None
    idempotency_key: str | None = None

    @property
    def scope(self) -> str:
        return f"billing.top-ups.{self.tenant_id}"

    def fingerprint(self) -> object:
        return {"amount_micros": self.amount_micros, "reference": self.reference}

    async def apply(self, uow: UnitOfWork) -> "Transfer":
        return await top_up(uow, self)


@dataclasses.dataclass(frozen=True)
class GrantCredit:
    tenant_id: uuid.UUID
    amount_micros: int
    expires_at: dt.datetime
    priority: int = 0
    idempotency_key: str | None = None

    @property
    def scope(self) -> str:
        return f"billing.grants.{self.tenant_id}"

    def fingerprint(self) -> object:
        # The request body's fields in its order: keys stored before keep matching.
        fields = ("amount_micros", "expires_at", "priority")
        return {f: getattr(self, f) for f in fields}

    async def apply(self, uow: UnitOfWork) -> "Grant":
        return await grant_credit(uow, self)


@dataclasses.dataclass(frozen=True)
class ReverseTransaction:
    transaction_id: uuid.UUID
    idempotency_key: str | None = None
    scope = "billing.reversals"

    def fingerprint(self) -> object:
        return {"transaction_id": str(self.transaction_id)}

    async def apply(self, uow: UnitOfWork) -> list[Transfer]:
        return await reverse_transaction(uow, self.transaction_id)


@dataclasses.dataclass(frozen=True)
class AddPrice:
    version: PriceVersion
    idempotency_key: str | None = None
    scope = "billing.prices"

    def fingerprint(self) -> object:
        fields = ("price_key", "micros_per_gpu_hour", "effective_from", "currency")
        return {f: getattr(self.version, f) for f in (*fields, "tenant_id", "min_increment_s")}

    async def apply(self, uow: UnitOfWork) -> uuid.UUID:
        return await add_price(uow, self.version)


@dataclasses.dataclass(frozen=True)
class Grant:
    grant_id: uuid.UUID
    transfer: Transfer


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


async def grant_credit(uow: UnitOfWork, command: GrantCredit) -> Grant:
    """Open a promotional account for the grant and fund it from promo_funding."""
    _check_amount(command.amount_micros)
    now = dt.datetime.now(dt.UTC)
    if command.expires_at <= now:
        raise ValidationFailed.for_field("expires_at", "must be in the future")
    repo = LedgerRepository(uow)
    locked = await _locked_tenant(repo, command.tenant_id)
    currency = locked[command.tenant_id]["currency"]
    grant_id = uuid7()
    await repo.open_grant(
        grant_id, command.tenant_id, currency, command.priority, command.expires_at
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
    await EVENTS.add_event(  # an operator's action: audit records it (billing.ledger.v1)
        uow,
        "billing.credit.granted",
        subject=str(command.tenant_id),
        tenant=str(command.tenant_id),
        payload=CreditGranted(
            grant_id=grant_id,
            tenant_id=command.tenant_id,
            amount_micros=command.amount_micros,
            currency=currency,
            priority=command.priority,
            expires_at=command.expires_at,
            occurred_at=now,
        ),
    )
    return Grant(grant_id, transfer)


async def expire_grants(db: Database, now: dt.datetime | None = None) -> int:
    """Return what is left of every expired grant to promo_funding, one tenant per
    transaction. Grants are re-read under the tenant's lock, so a concurrent or repeated
    sweep finds nothing left to expire."""
    now = now or dt.datetime.now(dt.UTC)
    async with db.unit_of_work() as uow:
        tenants = await LedgerRepository(uow).tenants_with_expired_grants(now)
    expired = 0
    for tenant_id in tenants:
        async with db.unit_of_work() as uow:
            repo = LedgerRepository(uow)
            await repo.lock_tenants([tenant_id])
            columns = TransferColumns()
            for grant in await repo.expired_grants(tenant_id, now):
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
                        tenant_id=tenant_id,
                        occurred_at=now,
                    )
                )
            if columns.id:
                await post_and_announce(uow, tenant_id, columns)
                await uow.commit()
                expired += len(columns.id)
    return expired


async def reverse_transaction(uow: UnitOfWork, transaction_id: uuid.UUID) -> list[Transfer]:
    """Correct a transaction by reversing every transfer of it (never by editing it)."""
    repo = LedgerRepository(uow)
    legs = await repo.transaction_legs(transaction_id)
    if not legs:
        raise NotFound(f"transaction {transaction_id} not found")
    if any(leg.kind == TransferKind.REVERSAL for leg in legs):
        raise Conflict("a reversal cannot be reversed; post a new movement instead")
    tenant_id = legs[0].tenant_id
    await _locked_tenant(repo, tenant_id)
    reversal_tx = uuid.uuid5(transaction_id, "reversal")
    now = dt.datetime.now(dt.UTC)
    reversals = [reversing(leg, reversal_tx, now) for leg in legs]
    columns = TransferColumns()
    for transfer in reversals:
        columns.add(transfer)
    try:
        async with uow.savepoint():
            await post_and_announce(uow, tenant_id, columns)
    except DuplicateTransfer:
        raise Conflict(f"transaction {transaction_id} is already reversed") from None
    except Overdrawn:  # the repository's name for the promo account's CHECK refusing it
        raise Conflict(
            "the reversal would take more from a promotional grant than it holds"
        ) from None
    await EVENTS.add_event(
        uow,
        "billing.transaction.reversed",
        subject=str(tenant_id),
        tenant=str(tenant_id),
        payload=TransactionReversed(
            transaction_id=transaction_id,
            reversal_id=reversal_tx,
            tenant_id=tenant_id,
            reversed_kind=legs[0].kind.value,  # type: ignore[arg-type]
            legs=len(legs),
            amount_micros=sum(leg.amount_micros for leg in legs),
            currency=legs[0].currency,
            occurred_at=now,
        ),
    )
    return reversals


async def add_price(uow: UnitOfWork, version: PriceVersion) -> uuid.UUID:
    if version.micros_per_gpu_hour < 0:
        raise ValidationFailed.for_field("micros_per_gpu_hour", "must be >= 0")
    if version.min_increment_s < 1:
        raise ValidationFailed.for_field("min_increment_s", "must be >= 1")
    price_id = uuid7()
    try:
        await LedgerRepository(uow).add_price(price_id, version)
    except PriceExists:
        raise Conflict("a version of this price already takes effect at that time") from None
    await announce_prices(uow)
    return price_id
