"""Refunds of settled top-ups, whole or in parts.

1. One transaction (under the tenant lock and the payment's row lock): check the refund
   against the payment (domain/payments.py: settled or partly refunded, at most what is
   neither refunded nor reserved) and against the wallet (refunding credit already spent is
   refused), record the refund `requested`, reserve its amount on the payment, debit the
   wallet (wallet -> clearing, kind `refund`, transfer id UUIDv5(refund id, "refund")) and
   remember the Idempotency-Key. The money is out of the wallet before the provider is
   asked, so it cannot be spent meanwhile.
2. The provider is called outside any transaction, with the refund id as its idempotency key.
3. One transaction records the outcome: `succeeded` moves the payment (settled ->
   partially_refunded -> refunded) and announces `billing.payment.refunded`; a decline
   reverses the wallet debit (a `reversal` transfer, never an edit) and announces
   `billing.payment.refund_failed`; `pending` keeps the reservation. An unknown outcome (the
   provider unreachable) leaves the refund `requested`: repeating the request with the same
   Idempotency-Key asks the provider again, which cannot refund twice.
"""

import dataclasses
import datetime as dt
import uuid
from typing import Any

from billing.app.funds import post_and_announce
from billing.domain.ledger import (
    AccountKind,
    Transfer,
    TransferKind,
    platform_account_id,
    reversing,
    wallet_id,
)
from billing.domain.payments import (
    PAYMENT_TOPIC,
    PaymentEvent,
    PaymentStatus,
    RefundRefused,
    check_refund,
    status_after_refund,
)
from billing.providers.base import PaymentProvider, RefundDeclined, RefundResult
from billing.store.ledger import LedgerRepository, TransferColumns
from gpucloud_contracts.events.billing import RefundChanged
from platformkit import idempotency
from platformkit.db import Database, UnitOfWork
from platformkit.errors import Conflict, NotFound, ValidationFailed
from platformkit.ids import uuid7
from platformkit.outbox import add_event


@dataclasses.dataclass(frozen=True)
class RequestRefund:
    tenant_id: uuid.UUID
    payment_id: uuid.UUID
    amount_micros: int | None  # None: everything still refundable
    idempotency_key: str


def refund_transfer_id(refund_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(refund_id, "refund")


async def get_refund(db: Database, tenant_id: uuid.UUID, refund_id: uuid.UUID) -> Any:
    async with db.unit_of_work() as uow:
        row = await uow.fetch_one(
            "SELECT * FROM refunds WHERE id = :id AND tenant_id = :t",
            {"id": refund_id, "t": tenant_id},
        )
    if row is None:
        raise NotFound(f"refund {refund_id} not found")
    return row


async def refund_payment(
    db: Database, provider: PaymentProvider, command: RequestRefund
) -> uuid.UUID:
    """Returns the refund id; a repeated Idempotency-Key returns the same refund (and asks
    the provider again when its outcome is still unknown)."""
    scope = f"billing.refunds.{command.payment_id}"
    body_hash = idempotency.request_hash({"amount_micros": command.amount_micros})
    async with db.unit_of_work() as uow:
        stored = await idempotency.find(uow, scope, command.idempotency_key, body_hash)
        if stored is not None:
            refund_id = uuid.UUID(stored.body.decode())
        else:
            refund_id = await _reserve(uow, command)
            await idempotency.remember(
                uow, scope, command.idempotency_key, body_hash, 201, str(refund_id).encode()
            )
            await uow.commit()
    async with db.unit_of_work() as uow:
        refund = await uow.fetch_one(
            "SELECT r.status, r.amount_micros, r.currency, p.provider_ref FROM refunds r"
            " JOIN payments p ON p.id = r.payment_id WHERE r.id = :id",
            {"id": refund_id},
        )
    if refund["status"] != "requested":
        return refund_id
    outcome: RefundResult | RefundDeclined
    try:
        outcome = await provider.refund(
            refund["provider_ref"], refund_id, refund["amount_micros"], refund["currency"]
        )
    except RefundDeclined as exc:
        outcome = exc
    async with db.unit_of_work() as uow:
        await record_refund_outcome(uow, refund_id, outcome)
        await uow.commit()
    return refund_id


async def _reserve(uow: UnitOfWork, command: RequestRefund) -> uuid.UUID:
    repo = LedgerRepository(uow)
    locked = await repo.lock_tenants([command.tenant_id])
    if command.tenant_id not in locked:
        raise NotFound(f"tenant {command.tenant_id} is not known to billing")
    payment = await uow.fetch_one(
        "SELECT * FROM payments WHERE id = :id AND tenant_id = :t FOR UPDATE",
        {"id": command.payment_id, "t": command.tenant_id},
    )
    if payment is None:
        raise NotFound(f"payment {command.payment_id} not found")
    amount, refunded = payment["amount_micros"], payment["refunded_micros"]
    reserved = payment["refund_reserved_micros"]
    requested = (
        command.amount_micros if command.amount_micros is not None else amount - refunded - reserved
    )
    try:
        check_refund(PaymentStatus(payment["status"]), amount, refunded, reserved, requested)
    except RefundRefused as exc:
        if exc.field == "amount_micros" and command.amount_micros is not None:
            raise ValidationFailed.for_field("amount_micros", str(exc)) from None
        raise Conflict(str(exc)) from None
    currency = payment["currency"]
    wallet = wallet_id(command.tenant_id, currency)
    balance = (
        await uow.fetch_one(
            "SELECT credits_posted - debits_posted AS balance FROM accounts WHERE id = :id",
            {"id": wallet},
        )
    )["balance"]
    if balance < requested:
        raise Conflict(
            f"the wallet holds {balance} micro-units; a refund cannot return credit already spent"
        )
    refund_id = uuid7()
    debit_id = refund_transfer_id(refund_id)
    await uow.execute(
        "INSERT INTO refunds (id, payment_id, tenant_id, amount_micros, currency, status,"
        " debit_transfer_id) VALUES (:id, :p, :t, :amount, :currency, 'requested', :debit)",
        {
            "id": refund_id,
            "p": command.payment_id,
            "t": command.tenant_id,
            "amount": requested,
            "currency": currency,
            "debit": debit_id,
        },
    )
    await uow.execute(
        "UPDATE payments SET refund_reserved_micros = refund_reserved_micros + :amount,"
        " updated_at = now() WHERE id = :id",
        {"amount": requested, "id": command.payment_id},
    )
    columns = TransferColumns()
    columns.add(
        Transfer(
            id=debit_id,
            transaction_id=debit_id,
            debit_account_id=wallet,
            credit_account_id=platform_account_id(AccountKind.CLEARING, currency),
            amount_micros=requested,
            currency=currency,
            kind=TransferKind.REFUND,
            tenant_id=command.tenant_id,
            occurred_at=dt.datetime.now(dt.UTC),
        )
    )
    await post_and_announce(uow, command.tenant_id, columns)
    return refund_id


async def record_refund_outcome(
    uow: UnitOfWork, refund_id: uuid.UUID, outcome: RefundResult | RefundDeclined
) -> str:
    """Apply the provider's answer once; a refund already settled either way is left as is."""
    head = await uow.fetch_one("SELECT tenant_id FROM refunds WHERE id = :id", {"id": refund_id})
    if head is None:
        raise NotFound(f"refund {refund_id} not found")
    await LedgerRepository(uow).lock_tenants([head["tenant_id"]])
    refund = await uow.fetch_one(
        "SELECT * FROM refunds WHERE id = :id FOR UPDATE", {"id": refund_id}
    )
    if refund["status"] in ("succeeded", "failed"):
        return refund["status"]
    payment = await uow.fetch_one(
        "SELECT * FROM payments WHERE id = :id FOR UPDATE", {"id": refund["payment_id"]}
    )
    amount = refund["amount_micros"]
    if isinstance(outcome, RefundResult) and outcome.status == "pending":
        await uow.execute(
            "UPDATE refunds SET status = 'pending', provider_ref = :ref, updated_at = now()"
            " WHERE id = :id",
            {"ref": outcome.provider_ref, "id": refund_id},
        )
        return "pending"
    if isinstance(outcome, RefundResult):
        refunded = payment["refunded_micros"] + amount
        status = status_after_refund(
            PaymentStatus(payment["status"]), payment["amount_micros"], refunded
        )
        await uow.execute(
            "UPDATE payments SET refunded_micros = :refunded, status = :status,"
            " refund_reserved_micros = refund_reserved_micros - :amount, updated_at = now()"
            " WHERE id = :id",
            {"refunded": refunded, "status": status.value, "amount": amount, "id": payment["id"]},
        )
        await uow.execute(
            "UPDATE refunds SET status = 'succeeded', provider_ref = :ref, updated_at = now()"
            " WHERE id = :id",
            {"ref": outcome.provider_ref, "id": refund_id},
        )
        await _announce(uow, refund, payment, "succeeded", refunded, status, outcome.provider_ref)
        return "succeeded"
    # Declined: the reservation is released and the wallet debit reversed.
    await uow.execute(
        "UPDATE payments SET refund_reserved_micros = refund_reserved_micros - :amount,"
        " updated_at = now() WHERE id = :id",
        {"amount": amount, "id": payment["id"]},
    )
    reason = str(outcome)[:1000]
    await uow.execute(
        "UPDATE refunds SET status = 'failed', failure_reason = :r, updated_at = now()"
        " WHERE id = :id",
        {"r": reason, "id": refund_id},
    )
    debit = refund["debit_transfer_id"]
    original = Transfer(
        id=debit,
        transaction_id=debit,
        debit_account_id=wallet_id(refund["tenant_id"], refund["currency"]),
        credit_account_id=platform_account_id(AccountKind.CLEARING, refund["currency"]),
        amount_micros=amount,
        currency=refund["currency"],
        kind=TransferKind.REFUND,
        tenant_id=refund["tenant_id"],
        occurred_at=refund["created_at"],
    )
    columns = TransferColumns()
    columns.add(reversing(original, original.id, dt.datetime.now(dt.UTC)))
    await post_and_announce(uow, refund["tenant_id"], columns)
    await _announce(
        uow,
        refund,
        payment,
        "failed",
        payment["refunded_micros"],
        PaymentStatus(payment["status"]),
        None,
        reason,
    )
    return "failed"


async def _announce(
    uow: UnitOfWork,
    refund: Any,
    payment: Any,
    status: str,
    refunded: int,
    payment_status: PaymentStatus,
    provider_ref: str | None,
    reason: str | None = None,
) -> None:
    await add_event(
        uow,
        topic=PAYMENT_TOPIC,
        type=(PaymentEvent.REFUNDED if status == "succeeded" else PaymentEvent.REFUND_FAILED),
        source="billing",
        subject=str(payment["id"]),
        tenant=str(payment["tenant_id"]),
        payload=RefundChanged(
            refund_id=refund["id"],
            payment_id=payment["id"],
            tenant_id=payment["tenant_id"],
            amount_micros=refund["amount_micros"],
            currency=refund["currency"].strip(),
            provider=payment["provider"],
            provider_ref=provider_ref,
            status=status,  # type: ignore[arg-type]
            failure_reason=reason,
            refunded_micros=refunded,
            payment_status=payment_status.value,  # type: ignore[arg-type]
            occurred_at=dt.datetime.now(dt.UTC),
        ),
    )
