"""Top-up payments through a provider: initiate, then apply the provider's signed webhooks.

initiate: one transaction records the payment `initiated` (with its Idempotency-Key), the
provider is called outside any transaction, a second transaction records `pending` and the
provider's reference (or `failed` when the provider refuses). Webhooks: the signature is
verified first; then one transaction records the provider event id (a repeated delivery
changes nothing), moves the payment through its state machine and, on settlement only,
credits the wallet from clearing under a transfer id derived from the payment id, with the
payment event and the balance announcement in the outbox.
"""

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from billing.app.events import EVENTS
from billing.app.funds import post_and_announce
from billing.app.refunds import record_refund_outcome
from billing.domain.ledger import (
    AccountKind,
    Transfer,
    TransferKind,
    platform_account_id,
    wallet_id,
)
from billing.domain.payments import (
    IllegalTransition,
    PaymentEvent,
    PaymentStatus,
    path_to,
)
from billing.providers.base import (
    PaymentProvider,
    RefundDeclined,
    RefundResult,
    RefundUpdate,
    WebhookEvent,
)
from billing.store.ledger import LedgerRepository, TransferColumns
from billing.store.payments import PaymentRepository, RefundRepository
from gpucloud_contracts.events.billing import PaymentChanged
from platformkit.db import Database, UnitOfWork
from platformkit.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from platformkit.idempotency import IdempotentRequest, StoredResponse, run_once
from platformkit.ids import uuid7

SETTLEMENT = "settlement"
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class InitiatePayment:
    tenant_id: uuid.UUID
    amount_micros: int
    idempotency_key: str


def settlement_transfer_id(payment_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(payment_id, SETTLEMENT)


async def get_payment(db: Database, tenant_id: uuid.UUID, payment_id: uuid.UUID) -> Any:
    async with db.unit_of_work() as uow:
        row = await PaymentRepository(uow).of_tenant(tenant_id, payment_id)
    if row is None:
        raise NotFound(f"payment {payment_id} not found")
    return row


def _payment_reference(payment_id: uuid.UUID) -> StoredResponse:
    """What the Idempotency-Key record of a payment holds: its id (the response is read
    fresh each time, since the payment moves on)."""
    return StoredResponse(201, str(payment_id).encode())


@dataclasses.dataclass(frozen=True)
class InitiatedPayment:
    payment_id: uuid.UUID
    # for the caller alone (Stripe.js confirms the intent with it); never stored or logged
    client_secret: str | None = dataclasses.field(default=None, repr=False)


async def initiate_payment(
    db: Database, provider: PaymentProvider, command: InitiatePayment
) -> InitiatedPayment:
    """The payment id and the provider's confirmation secret; a repeated Idempotency-Key
    returns the same payment (no second one is created at the provider) with its secret read
    again from the provider, since billing keeps none."""
    if not 0 < command.amount_micros <= 10**13:
        raise ValidationFailed.for_field("amount_micros", "must be 1 to 10000000000000")
    request = IdempotentRequest.of(
        f"billing.payments.{command.tenant_id}",
        command.idempotency_key,
        {"amount_micros": command.amount_micros},
    )

    async def record(uow: UnitOfWork) -> uuid.UUID:
        locked = await LedgerRepository(uow).lock_tenants([command.tenant_id])
        if command.tenant_id not in locked:
            raise NotFound(f"tenant {command.tenant_id} is not known to billing")
        payment_id = uuid7()
        await PaymentRepository(uow).add(
            payment_id,
            command.tenant_id,
            command.amount_micros,
            locked[command.tenant_id]["currency"],
            provider.name,
        )
        return payment_id

    reply = await run_once(db, request, record, _payment_reference)
    payment_id = uuid.UUID(reply.body.decode())
    payment = await get_payment(db, command.tenant_id, payment_id)
    if reply.replayed:
        return InitiatedPayment(payment_id, await _secret_again(provider, payment))
    try:
        created = await provider.create_payment(
            payment_id, command.amount_micros, payment["currency"]
        )
    except Exception as exc:
        async with db.unit_of_work() as uow:
            await _move(uow, payment_id, PaymentStatus.FAILED, reason=repr(exc)[:1000])
            await uow.commit()
        return InitiatedPayment(payment_id)
    async with db.unit_of_work() as uow:
        await PaymentRepository(uow).set_provider_ref(payment_id, created.provider_ref)
        await _move(uow, payment_id, PaymentStatus.PENDING)
        await uow.commit()
    return InitiatedPayment(payment_id, created.client_secret)


async def _secret_again(provider: PaymentProvider, payment: Any) -> str | None:
    """The confirmation secret of a payment made before, from the provider that made it;
    None when there is nothing the customer could still confirm."""
    if payment["provider_ref"] is None or payment["provider"] != provider.name:
        return None
    if payment["status"] not in (PaymentStatus.PENDING, PaymentStatus.FAILED):
        return None  # settled (or refunded): confirming again would charge nothing
    try:
        return await provider.client_secret(payment["provider_ref"])
    except Exception:
        log.warning("payment provider unreachable", extra={"payment_id": str(payment["id"])})
        raise ServiceUnavailable(
            "the payment provider did not answer; repeat the request to get the payment's"
            " client_secret"
        ) from None


async def apply_webhook(
    db: Database, provider: PaymentProvider, body: bytes, headers: Mapping[str, str]
) -> str:
    """Verify and apply one webhook delivery; returns what happened (for the response)."""
    event = provider.verify_webhook(body, headers)  # raises InvalidSignature
    if event is None:
        return "ignored"
    if isinstance(event, RefundUpdate):
        async with db.unit_of_work() as uow:
            outcome = await _apply_refund_update(uow, provider, event)
            await uow.commit()
        return outcome
    async with db.unit_of_work() as uow:
        payments = PaymentRepository(uow)
        if not await payments.first_delivery(
            provider.name, event.event_id, event.payment_id, event.type
        ):
            return "duplicate"
        target = PaymentStatus.SETTLED if event.type == "payment.settled" else PaymentStatus.FAILED
        outcome = await _move(uow, event.payment_id, target, event=event, reason=event.reason)
        await uow.commit()
    return outcome


async def _apply_refund_update(
    uow: UnitOfWork, provider: PaymentProvider, update: RefundUpdate
) -> str:
    """A pending refund's outcome: succeeded keeps the wallet debit and moves the payment,
    failed reverses the debit and releases the reservation (app/refunds.py, the same as the
    provider's first answer); an event seen before, or a refund already final, changes
    nothing."""
    refunds = RefundRepository(uow)
    refund = await refunds.get(update.refund_id)
    if refund is None:
        raise NotFound(f"refund {update.refund_id} not found")
    if refund["provider_ref"] not in (None, update.provider_ref):
        raise Conflict("the webhook's refund reference does not match the refund")
    if not await PaymentRepository(uow).first_delivery(
        provider.name, update.event_id, refund["payment_id"], f"refund.{update.status}"
    ):
        return "duplicate"
    outcome: RefundResult | RefundDeclined
    if update.status == "failed":
        outcome = RefundDeclined(update.reason or "refund failed at the provider")
    else:
        outcome = RefundResult(update.provider_ref, update.status)
    before = refund["status"]
    after = await record_refund_outcome(uow, update.refund_id, outcome)
    return "unchanged" if after == before else f"refund_{after}"


async def _move(
    uow: UnitOfWork,
    payment_id: uuid.UUID,
    target: PaymentStatus,
    *,
    event: WebhookEvent | None = None,
    reason: str | None = None,
) -> str:
    payments = PaymentRepository(uow)
    payment = await payments.get(payment_id, lock=True)
    if payment is None:
        raise NotFound(f"payment {payment_id} not found")
    if event is not None and payment["provider_ref"] not in (None, event.provider_ref):
        raise Conflict("the webhook's provider reference does not match the payment")
    try:
        steps = path_to(PaymentStatus(payment["status"]), target)
    except IllegalTransition as exc:
        # a late `failed` after `settled` is refused (failed -> settled is a retried card)
        raise Conflict(str(exc)) from None
    if not steps:
        return "unchanged"
    await payments.move(
        payment_id, target, reason=reason, provider_ref=event.provider_ref if event else None
    )
    if target == PaymentStatus.SETTLED:
        await _credit(uow, payment)
    if target in (PaymentStatus.SETTLED, PaymentStatus.FAILED):
        await EVENTS.add_event(
            uow,
            PaymentEvent.SETTLED if target == PaymentStatus.SETTLED else PaymentEvent.FAILED,
            subject=str(payment_id),
            tenant=str(payment["tenant_id"]),
            payload=PaymentChanged(
                payment_id=payment_id,
                tenant_id=payment["tenant_id"],
                amount_micros=payment["amount_micros"],
                currency=payment["currency"],
                provider=payment["provider"],
                provider_ref=(event.provider_ref if event else payment["provider_ref"]),
                status=target.value,
                failure_reason=reason,
                occurred_at=dt.datetime.now(dt.UTC),
            ),
        )
    return target.value


async def _credit(uow: UnitOfWork, payment: Any) -> None:
    tenant_id, currency = payment["tenant_id"], payment["currency"]
    await LedgerRepository(uow).lock_tenants([tenant_id])
    transfer_id = settlement_transfer_id(payment["id"])
    columns = TransferColumns()
    columns.add(
        Transfer(
            id=transfer_id,
            transaction_id=transfer_id,
            debit_account_id=platform_account_id(AccountKind.CLEARING, currency),
            credit_account_id=wallet_id(tenant_id, currency),
            amount_micros=payment["amount_micros"],
            currency=currency,
            kind=TransferKind.TOP_UP,
            tenant_id=tenant_id,
            occurred_at=dt.datetime.now(dt.UTC),
        )
    )
    await post_and_announce(uow, tenant_id, columns)
    await PaymentRepository(uow).set_settlement(payment["id"], transfer_id)
