"""The payment provider interface: what billing needs from Stripe, the sandbox, or any other.

A provider creates a payment for an amount (carrying billing's payment id as metadata), with
the secret the customer confirms it with where the provider needs that (Stripe.js), and later
reports its outcome through signed webhooks; `verify_webhook` checks the signature and
returns the outcome of a payment or of a refund (None for an authentic event billing does
not act on), or raises
InvalidSignature. It refunds a settled payment, whole or in parts (`refund`), and lists what
it settled (`settlement_report`, for reconciliation).
"""

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Literal, Protocol


class InvalidSignature(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class WebhookEvent:
    event_id: str
    type: Literal["payment.settled", "payment.failed"]
    payment_id: uuid.UUID
    provider_ref: str
    reason: str | None = None


@dataclasses.dataclass(frozen=True)
class RefundUpdate:
    """The provider's later outcome of a refund it first answered `pending`."""

    event_id: str
    refund_id: uuid.UUID
    provider_ref: str
    status: Literal["succeeded", "failed", "pending"]
    reason: str | None = None


@dataclasses.dataclass(frozen=True)
class CreatedPayment:
    """The provider's payment: its reference and, where the customer confirms the payment
    in the browser (Stripe.js), the secret that lets them. The secret is handed to the
    caller who created the top-up and nowhere else: never stored, logged or published."""

    provider_ref: str
    client_secret: str | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True)
class Settlement:
    """One line of the provider's settlement report."""

    payment_id: uuid.UUID
    provider_ref: str
    amount_micros: int
    currency: str
    settled_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class RefundResult:
    """The provider's answer to a refund: its id and `succeeded` or `pending` (a refusal
    raises RefundDeclined)."""

    provider_ref: str
    status: Literal["succeeded", "pending"]


class RefundDeclined(Exception):
    """The provider refused the refund (the money stays with the tenant's wallet)."""


class PaymentProvider(Protocol):
    name: str

    async def create_payment(
        self, payment_id: uuid.UUID, amount_micros: int, currency: str
    ) -> CreatedPayment: ...

    async def client_secret(self, provider_ref: str) -> str | None:
        """The confirmation secret of a payment created before (a repeated top-up request
        is answered with it again, since billing does not keep it); None where the provider
        needs no confirmation by the customer."""
        ...

    def verify_webhook(
        self, body: bytes, headers: Mapping[str, str]
    ) -> WebhookEvent | RefundUpdate | None: ...

    async def refund(
        self, payment_ref: str, refund_id: uuid.UUID, amount_micros: int, currency: str
    ) -> RefundResult:
        """Refund part or all of a settled payment; `refund_id` makes a retry idempotent."""
        ...

    async def settlement_report(self, since: dt.datetime, until: dt.datetime) -> list[Settlement]:
        """What the provider settled in [since, until)."""
        ...
