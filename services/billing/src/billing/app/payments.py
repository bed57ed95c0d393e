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
import uuid
from collections.abc import Mapping
from typing import Any

from billing.app.funds import post_and_announce
from billing.domain.ledger import (
    AccountKind,
    Transfer,
    TransferKind,
    platform_account_id,
    wallet_id,
)
from billing.domain.payments import (
    PAYMENT_TOPIC,
    IllegalTransition,
    PaymentEvent,
    PaymentStatus,
    path_to,
)
from billing.providers.base import PaymentProvider, WebhookEvent
from billing.store.ledger import LedgerRepository, TransferColumns
from gpucloud_contracts.events.billing import PaymentChanged
from platformkit import idempotency
from platformkit.db import Database, UnitOfWork
from platformkit.errors import Conflict, NotFound, ValidationFailed
from platformkit.ids import uuid7
from platformkit.outbox import add_event

SETTLEMENT = "settlement"


@dataclasses.dataclass(frozen=True)
class InitiatePayment:
    tenant_id: uuid.UUID
    amount_micros: int
    idempotency_key: str


def settlement_transfer_id(payment_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(payment_id, SETTLEMENT)


async def get_payment(db: Database, tenant_id: uuid.UUID, payment_id: uuid.UUID) -> Any:
    async with db.unit_of_work() as uow:
        row = await uow.fetch_one(
            "SELECT * FROM payments WHERE id = :id AND tenant_id = :t",
            {"id": payment_id, "t": tenant_id},
        )
    if row is None:
        raise NotFound(f"payment {payment_id} not found")
    return row


async def initiate_payment(
    db: Database, provider: PaymentProvider, command: InitiatePayment
) -> tuple[int, uuid.UUID]:
    """Returns (HTTP status, payment id); a repeated Idempotency-Key returns the same id."""
    if not 0 < command.amount_micros <= 10**13:
        raise ValidationFailed.for_field("amount_micros", "must be 1 to 10000000000000")
    scope = f"billing.payments.{command.tenant_id}"
    body_hash = idempotency.request_hash({"amount_micros": command.amount_micros})
    async with db.unit_of_work() as uow:
        stored = await idempotency.find(uow, scope, command.idempotency_key, body_hash)
        if stored is not None:
            return stored.status, uuid.UUID(stored.body.decode())
        locked = await LedgerRepository(uow).lock_tenants([command.tenant_id])
        if command.tenant_id not in locked:
            raise NotFound(f"tenant {command.tenant_id} is not known to billing")
        payment_id = uuid7()
        await uow.execute(
            "INSERT INTO payments (id, tenant_id, amount_micros, currency, provider, status)"
            " VALUES (:id, :t, :amount, :currency, :provider, 'initiated')",
            {
                "id": payment_id,
                "t": command.tenant_id,
                "amount": command.amount_micros,
                "currency": locked[command.tenant_id]["currency"],
                "provider": provider.name,
            },
        )
        await idempotency.remember(
            uow, scope, command.idempotency_key, body_hash, 201, str(payment_id).encode()
        )
        await uow.commit()
        currency = locked[command.tenant_id]["currency"]
    try:
        ref = await provider.create_payment(payment_id, command.amount_micros, currency)
    except Exception as exc:
        async with db.unit_of_work() as uow:
            await _move(uow, payment_id, PaymentStatus.FAILED, reason=repr(exc)[:1000])
            await uow.commit()
        return 201, payment_id
    async with db.unit_of_work() as uow:
        await uow.execute(
            "UPDATE payments SET provider_ref = :ref WHERE id = :id AND provider_ref IS NULL",
            {"ref": ref, "id": payment_id},
        )
        await _move(uow, payment_id, PaymentStatus.PENDING)
        await uow.commit()
    return 201, payment_id


async def apply_webhook(
    db: Database, provider: PaymentProvider, body: bytes, headers: Mapping[str, str]
) -> str:
    """Verify and apply one webhook delivery; returns what happened (for the response)."""
    event = provider.verify_webhook(body, headers)  # raises InvalidSignature
    if event is None:
        return "ignored"
    async with db.unit_of_work() as uow:
        first = await uow.execute(
            "INSERT INTO provider_events (provider, event_id, payment_id, type)"
            " VALUES (:p, :e, :pid, :type) ON CONFLICT DO NOTHING",
            {"p": provider.name, "e": event.event_id, "pid": event.payment_id, "type": event.type},
        )
        if first.rowcount == 0:
            return "duplicate"
        target = PaymentStatus.SETTLED if event.type == "payment.settled" else PaymentStatus.FAILED
        outcome = await _move(uow, event.payment_id, target, event=event, reason=event.reason)
        await uow.commit()
    return outcome


async def _move(
    uow: UnitOfWork,
    payment_id: uuid.UUID,
    target: PaymentStatus,
    *,
    event: WebhookEvent | None = None,
    reason: str | None = None,
) -> str:
    payment = await uow.fetch_one(
        "SELECT * FROM payments WHERE id = :id FOR UPDATE", {"id": payment_id}
    )
    if payment is None:
        raise NotFound(f"payment {payment_id} not found")
    if event is not None and payment["provider_ref"] not in (None, event.provider_ref):
        raise Conflict("the webhook's provider reference does not match the payment")
    try:
        steps = path_to(PaymentStatus(payment["status"]), target)
    except IllegalTransition as exc:
        # a late `failed` after `settled` (or the reverse) is recorded, never applied
        raise Conflict(str(exc)) from None
    if not steps:
        return "unchanged"
    await uow.execute(
        "UPDATE payments SET status = :s, failure_reason = coalesce(:r, failure_reason),"
        " provider_ref = coalesce(provider_ref, :ref), updated_at = now() WHERE id = :id",
        {
            "s": target.value,
            "r": reason,
            "ref": event.provider_ref if event else None,
            "id": payment_id,
        },
    )
    if target == PaymentStatus.SETTLED:
        await _credit(uow, payment)
    if target in (PaymentStatus.SETTLED, PaymentStatus.FAILED):
        await add_event(
            uow,
            topic=PAYMENT_TOPIC,
            type=(PaymentEvent.SETTLED if target == PaymentStatus.SETTLED else PaymentEvent.FAILED),
            source="billing",
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
    await uow.execute(
        "UPDATE payments SET settlement_transfer_id = :t WHERE id = :id",
        {"t": transfer_id, "id": payment["id"]},
    )
