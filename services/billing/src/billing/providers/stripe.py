"""The Stripe payment provider, through Stripe's official Python library.

A top-up is a PaymentIntent carrying billing's payment id in its metadata, created with that id
as Stripe's idempotency key (a retried call makes no second intent); its `client_secret` goes
back to the caller only, who confirms the intent with Stripe.js. Its outcome arrives as a
webhook (`payment_intent.succeeded` / `payment_intent.payment_failed`) whose `Stripe-Signature`
is checked by `stripe.Webhook.construct_event` (HMAC-SHA256, 300 s tolerance); every other
event type is acknowledged and ignored. `api_base` points the client at stripe-mock in tests.

Money: billing counts integer micro-units; Stripe counts the currency's minor unit (cents, or
whole yen for zero-decimal currencies). An amount that is not a whole number of minor units is
refused rather than rounded, so what Stripe charges is exactly what the ledger credits.
"""

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import stripe

from billing.providers.base import (
    CreatedPayment,
    InvalidSignature,
    RefundDeclined,
    RefundResult,
    RefundUpdate,
    Settlement,
    WebhookEvent,
)

SIGNATURE_HEADER = "stripe-signature"
MICROS = 1_000_000
# Stripe's zero-decimal currencies (https://docs.stripe.com/currencies#zero-decimal).
ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
EVENT_TYPES = {
    "payment_intent.succeeded": "payment.settled",
    "payment_intent.payment_failed": "payment.failed",
}
# A Refund's later outcome: `charge.refund.updated` (and its newer name `refund.updated`).
REFUND_EVENT_TYPES = frozenset({"charge.refund.updated", "refund.updated"})
REFUND_STATUSES = {
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "failed",
    "pending": "pending",
    "requires_action": "pending",
}


def micros_per_minor_unit(currency: str) -> int:
    return MICROS if currency.upper() in ZERO_DECIMAL else MICROS // 100


def to_minor_units(amount_micros: int, currency: str) -> int:
    unit = micros_per_minor_unit(currency)
    if amount_micros % unit:
        raise ValueError(f"{amount_micros} micro-units is not a whole number of {currency} units")
    return amount_micros // unit


def to_micros(minor_units: int, currency: str) -> int:
    return minor_units * micros_per_minor_unit(currency)


@dataclasses.dataclass
class StripeProvider:
    api_key: str = dataclasses.field(repr=False)
    webhook_secret: str = dataclasses.field(repr=False)
    api_base: str | None = None
    name: str = "stripe"
    client: stripe.StripeClient = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        # The library logs whole response bodies at DEBUG (a PaymentIntent's client_secret
        # among them): never below INFO, whatever GPUCLOUD_LOG_LEVEL says.
        library_log = logging.getLogger("stripe")
        library_log.setLevel(max(library_log.getEffectiveLevel(), logging.INFO))
        self.client = stripe.StripeClient(
            self.api_key,
            base_addresses={"api": self.api_base} if self.api_base else {},
            http_client=stripe.HTTPXClient(),  # its async half serves the *_async calls
            max_network_retries=2,
        )

    async def create_payment(
        self, payment_id: uuid.UUID, amount_micros: int, currency: str
    ) -> CreatedPayment:
        intent = await self.client.v1.payment_intents.create_async(
            {
                "amount": to_minor_units(amount_micros, currency),
                "currency": currency.lower(),
                "metadata": {"payment_id": str(payment_id)},
                "automatic_payment_methods": {"enabled": True},
            },
            {"idempotency_key": f"billing-payment-{payment_id}"},
        )
        return CreatedPayment(intent.id, intent.client_secret)

    async def client_secret(self, provider_ref: str) -> str | None:
        """Read again from the intent (a secret key may retrieve it), for a repeated request."""
        intent = await self.client.v1.payment_intents.retrieve_async(provider_ref)
        return intent.client_secret

    def verify_webhook(
        self, body: bytes, headers: Mapping[str, str]
    ) -> WebhookEvent | RefundUpdate | None:
        """The payment or refund event, or None for an authentic event billing does not act
        on."""
        signature = {k.lower(): v for k, v in headers.items()}.get(SIGNATURE_HEADER)
        try:
            event = stripe.Webhook.construct_event(body, signature, self.webhook_secret)
        except stripe.SignatureVerificationError as exc:
            raise InvalidSignature(f"stripe signature: {exc.user_message or exc}") from None
        except ValueError:
            raise InvalidSignature("signed body is not a Stripe event") from None
        if event.type in REFUND_EVENT_TYPES:
            return _refund_update(event.id, event.data.object.to_dict())
        kind = EVENT_TYPES.get(event.type)
        if kind is None:
            return None
        intent: dict[str, Any] = event.data.object.to_dict()
        metadata = intent.get("metadata") or {}
        try:
            payment_id = uuid.UUID(metadata["payment_id"])
        except (KeyError, ValueError, TypeError):
            # authentic, but not a payment billing started (another integration's intent)
            return None
        error = intent.get("last_payment_error") or {}
        return WebhookEvent(
            event_id=event.id,
            type=kind,  # type: ignore[arg-type]
            payment_id=payment_id,
            provider_ref=intent["id"],
            reason=(error.get("code") or error.get("message"))
            if kind == "payment.failed"
            else None,
        )

    async def refund(
        self, payment_ref: str, refund_id: uuid.UUID, amount_micros: int, currency: str
    ) -> RefundResult:
        """A Refund of the PaymentIntent; billing's refund id is Stripe's idempotency key,
        so a retried call makes no second refund. `failed`/`canceled` (or an API refusal)
        is a decline; `pending`/`requires_action` stay pending (their outcome comes by a
        `charge.refund.updated` webhook, which finds the refund by `metadata.refund_id`)."""
        try:
            minor = to_minor_units(amount_micros, currency)
        except ValueError as exc:
            raise RefundDeclined(str(exc)) from None
        try:
            refund = await self.client.v1.refunds.create_async(
                {
                    "payment_intent": payment_ref,
                    "amount": minor,
                    "metadata": {"refund_id": str(refund_id)},
                },
                {"idempotency_key": f"billing-refund-{refund_id}"},
            )
        except stripe.InvalidRequestError as exc:
            raise RefundDeclined(f"stripe: {exc.user_message or exc}") from None
        if refund.status in ("failed", "canceled"):
            raise RefundDeclined(f"stripe refund {refund.id} {refund.status}")
        return RefundResult(refund.id, "succeeded" if refund.status == "succeeded" else "pending")

    async def settlement_report(self, since: dt.datetime, until: dt.datetime) -> list[Settlement]:
        """Succeeded PaymentIntents created in [since, until) that billing started."""
        page = await self.client.v1.payment_intents.list_async(
            {"created": {"gte": int(since.timestamp()), "lt": int(until.timestamp())}, "limit": 100}
        )
        report = []
        async for intent in page.auto_paging_iter():
            # a StripeObject is not a dict (no .get): found by the stripe-mock test
            metadata = intent.metadata.to_dict() if intent.metadata else {}
            payment_id = metadata.get("payment_id")
            if intent.status != "succeeded" or payment_id is None:
                continue
            report.append(
                Settlement(
                    payment_id=uuid.UUID(payment_id),
                    provider_ref=intent.id,
                    amount_micros=to_micros(intent.amount_received, intent.currency),
                    currency=intent.currency.upper(),
                    settled_at=dt.datetime.fromtimestamp(intent.created, dt.UTC),
                )
            )
        return report


def _refund_update(event_id: str, refund: dict[str, Any]) -> RefundUpdate | None:
    """A Refund billing asked for (its refund id in the metadata) in a final or pending
    state; None for another integration's refund (one made in Stripe's dashboard)."""
    metadata = refund.get("metadata") or {}
    status = REFUND_STATUSES.get(refund.get("status") or "")
    try:
        refund_id = uuid.UUID(metadata["refund_id"])
    except (KeyError, ValueError, TypeError):
        return None
    if status is None:
        return None
    reason = None
    if status == "failed":
        reason = f"stripe refund {refund['id']} {refund['status']}"
        if refund.get("failure_reason"):
            reason += f": {refund['failure_reason']}"
    return RefundUpdate(event_id, refund_id, refund["id"], status, reason)  # type: ignore[arg-type]
