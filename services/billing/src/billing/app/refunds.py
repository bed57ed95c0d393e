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
import logging
import uuid
from typing import Any

from billing.app.events import EVENTS
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
    PaymentEvent,
    PaymentStatus,
    RefundRefused,
    RefundStatus,
    check_refund,
    refund_transition,
    status_after_refund,
)
from billing.providers.base import PaymentProvider, RefundDeclined, RefundResult
from billing.store.ledger import LedgerRepository, TransferColumns
from billing.store.payments import PaymentRepository, RefundRepository
from gpucloud_contracts.events.billing import RefundChanged
from platformkit.db import Database, UnitOfWork
from platformkit.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from platformkit.idempotency import IdempotentRequest, StoredResponse, run_once
from platformkit.ids import uuid7

log = logging.getLogger(__name__)


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
        row = await RefundRepository(uow).of_tenant(tenant_id, refund_id)
    if row is None:
        raise NotFound(f"refund {refund_id} not found")
    return row


async def refund_payment(
    db: Database, provider: PaymentProvider, command: RequestRefund
) -> uuid.UUID:
    """Returns the refund id; a repeated Idempotency-Key returns the same refund (and asks
    the provider again when its outcome is still unknown)."""
    request = IdempotentRequest.of(
        f"billing.refunds.{command.payment_id}",
        command.idempotency_key,
        {"amount_micros": command.amount_micros},
    )
    reply = await run_once(
        db,
        request,
        lambda uow: _reserve(uow, command),
        lambda refund_id: StoredResponse(201, str(refund_id).encode()),
    )
    refund_id = uuid.UUID(reply.body.decode())
    async with db.unit_of_work() as uow:
        refund = await RefundRepository(uow).to_ask(refund_id)
    if refund["status"] != RefundStatus.REQUESTED:
        return refund_id
    outcome: RefundResult | RefundDeclined
    try:
        outcome = await provider.refund(
            refund["provider_ref"], refund_id, refund["amount_micros"], refund["currency"]
        )
    except RefundDeclined as exc:
        outcome = exc
    except Exception:
        # Unreachable or erring provider: the outcome is unknown, so the refund stays
        # `requested` with its hold, and the same Idempotency-Key asks the provider again
        # (the provider's idempotency key is the refund id: no second refund).
        log.warning("payment provider unreachable", extra={"refund_id": str(refund_id)})
        raise ServiceUnavailable(
            "the payment provider did not answer; repeat the request with the same"
            " Idempotency-Key to learn the refund's outcome"
        ) from None
    async with db.unit_of_work() as uow:
        await record_refund_outcome(uow, refund_id, outcome)
        await uow.commit()
    return refund_id


async def _reserve(uow: UnitOfWork, command: RequestRefund) -> uuid.UUID:
    ledger = LedgerRepository(uow)
    locked = await ledger.lock_tenants([command.tenant_id])
    if command.tenant_id not in locked:
        raise NotFound(f"tenant {command.tenant_id} is not known to billing")
    payments = PaymentRepository(uow)
    payment = await payments.of_tenant(command.tenant_id, command.payment_id, lock=True)
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
    balance = await ledger.account_balance(wallet)
    if balance < requested:
        raise Conflict(
            f"the wallet holds {balance} micro-units; a refund cannot return credit already spent"
        )
    refund_id = uuid7()
    debit_id = refund_transfer_id(refund_id)
    await RefundRepository(uow).add(
        refund_id, command.payment_id, command.tenant_id, requested, currency, debit_id
    )
    await payments.reserve_refund(command.payment_id, requested)
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


def _outcome_status(outcome: RefundResult | RefundDeclined) -> RefundStatus:
    if isinstance(outcome, RefundDeclined):
        return RefundStatus.FAILED
    return RefundStatus.PENDING if outcome.status == "pending" else RefundStatus.SUCCEEDED


async def record_refund_outcome(
    uow: UnitOfWork, refund_id: uuid.UUID, outcome: RefundResult | RefundDeclined
) -> str:
    """Apply the provider's answer once; a refund already settled either way is left as is."""
    refunds, payments = RefundRepository(uow), PaymentRepository(uow)
    head = await refunds.get(refund_id)
    if head is None:
        raise NotFound(f"refund {refund_id} not found")
    await LedgerRepository(uow).lock_tenants([head["tenant_id"]])
    refund = await refunds.get(refund_id, lock=True)
    target = _outcome_status(outcome)
    if not refund_transition(RefundStatus(refund["status"]), target):
        return refund["status"]
    payment = await payments.get(refund["payment_id"], lock=True)
    amount = refund["amount_micros"]
    if isinstance(outcome, RefundResult) and target == RefundStatus.PENDING:
        await refunds.move(refund_id, target, provider_ref=outcome.provider_ref)
        return target.value
    if isinstance(outcome, RefundResult):
        refunded = payment["refunded_micros"] + amount
        status = status_after_refund(
            PaymentStatus(payment["status"]), payment["amount_micros"], refunded
        )
        await payments.refunded(payment["id"], amount, status)
        await refunds.move(refund_id, target, provider_ref=outcome.provider_ref)
        await _announce(uow, refund, payment, target, refunded, status, outcome.provider_ref)
        return target.value
    # Declined: the reservation is released and the wallet debit reversed.
    await payments.release_refund(payment["id"], amount)
    reason = str(outcome)[:1000]
    await refunds.move(refund_id, target, reason=reason)
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
        target,
        payment["refunded_micros"],
        PaymentStatus(payment["status"]),
        None,
        reason,
    )
    return target.value


async def _announce(
    uow: UnitOfWork,
    refund: Any,
    payment: Any,
    status: RefundStatus,
    refunded: int,
    payment_status: PaymentStatus,
    provider_ref: str | None,
    reason: str | None = None,
) -> None:
    succeeded = status == RefundStatus.SUCCEEDED
    await EVENTS.add_event(
        uow,
        PaymentEvent.REFUNDED if succeeded else PaymentEvent.REFUND_FAILED,
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
            status=status.value,  # type: ignore[arg-type]
            failure_reason=reason,
            refunded_micros=refunded,
            payment_status=payment_status.value,  # type: ignore[arg-type]
            occurred_at=dt.datetime.now(dt.UTC),
        ),
    )
