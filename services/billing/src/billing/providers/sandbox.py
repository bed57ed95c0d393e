"""A local payment provider for development and tests.

It accepts every payment, then reports the outcome asynchronously through a webhook signed
with HMAC-SHA256 (`Sandbox-Signature: t=<unix time>,v1=<hex of HMAC(secret, "t.body")>`,
the scheme Stripe uses), and can be told to fail a payment, to send its webhook several
times, or to send it late: `next_behaviour` applies to the next payment created.
"""

import asyncio
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from billing.providers.base import (
    CreatedPayment,
    InvalidSignature,
    RefundDeclined,
    RefundResult,
    Settlement,
    WebhookEvent,
)

SIGNATURE_HEADER = "sandbox-signature"
TOLERANCE_S = 300
Deliver = Callable[[bytes, dict[str, str]], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class Behaviour:
    outcome: Literal["settle", "fail"] = "settle"
    copies: int = 1  # 0: the webhook is lost (the provider still settled)
    delay_s: float = 0.0


def sign(secret: bytes, body: bytes, at: int) -> str:
    mac = hmac.new(secret, f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


@dataclasses.dataclass
class SandboxProvider:
    secret: bytes
    deliver: Deliver
    name: str = "sandbox"
    next_behaviour: Behaviour = dataclasses.field(default_factory=Behaviour)
    # the provider's own books: what it settled, whether or not its webhook arrived
    settled: dict[str, Settlement] = dataclasses.field(default_factory=dict)
    # refunds it made: refund id -> (payment ref, amount); `fail_next_refund` declines one
    refunds: dict[uuid.UUID, tuple[str, int]] = dataclasses.field(default_factory=dict)
    fail_next_refund: bool = False
    _tasks: set[asyncio.Task[None]] = dataclasses.field(default_factory=set)

    async def create_payment(
        self, payment_id: uuid.UUID, amount_micros: int, currency: str
    ) -> CreatedPayment:
        behaviour, self.next_behaviour = self.next_behaviour, Behaviour()
        ref = f"sbx_{uuid.uuid4().hex}"
        event = {
            "id": f"evt_{uuid.uuid4().hex}",
            "type": "payment.settled" if behaviour.outcome == "settle" else "payment.failed",
            "payment_id": str(payment_id),
            "provider_ref": ref,
            "reason": None if behaviour.outcome == "settle" else "card_declined",
        }
        if behaviour.outcome == "settle":
            self.settled[ref] = Settlement(
                payment_id, ref, amount_micros, currency, dt.datetime.now(dt.UTC)
            )
        task = asyncio.create_task(self._send(json.dumps(event).encode(), behaviour))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return CreatedPayment(ref)  # settles on its own: nothing for a customer to confirm

    async def client_secret(self, provider_ref: str) -> str | None:
        return None

    async def _send(self, body: bytes, behaviour: Behaviour) -> None:
        await asyncio.sleep(behaviour.delay_s)
        for _ in range(behaviour.copies):
            headers = {SIGNATURE_HEADER: sign(self.secret, body, int(time.time()))}
            await self.deliver(body, headers)

    async def drain(self) -> None:
        """Wait until no webhook is in flight. Polls, so it may run on another event loop
        than the one sending (a test client serves the app from its own thread)."""
        while self._tasks:  # noqa: ASYNC110 - an asyncio.Event belongs to one loop
            await asyncio.sleep(0.01)

    async def refund(
        self, payment_ref: str, refund_id: uuid.UUID, amount_micros: int, currency: str
    ) -> RefundResult:
        if refund_id in self.refunds:  # a retried call: the same refund, not a second one
            return RefundResult(f"sbx_re_{refund_id.hex}", "succeeded")
        if self.fail_next_refund:
            self.fail_next_refund = False
            raise RefundDeclined("sandbox told to decline this refund")
        settled = self.settled.get(payment_ref)
        if settled is None:
            raise RefundDeclined(f"no settled payment {payment_ref}")
        done = sum(a for ref, a in self.refunds.values() if ref == payment_ref)
        if done + amount_micros > settled.amount_micros:
            raise RefundDeclined("refunds would exceed the payment")
        self.refunds[refund_id] = (payment_ref, amount_micros)
        return RefundResult(f"sbx_re_{refund_id.hex}", "succeeded")

    async def settlement_report(self, since: dt.datetime, until: dt.datetime) -> list[Settlement]:
        return [s for s in self.settled.values() if since <= s.settled_at < until]

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        header = headers.get(SIGNATURE_HEADER, "")
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        try:
            at = int(parts["t"])
            given = parts["v1"]
        except (KeyError, ValueError):
            raise InvalidSignature("missing or malformed signature") from None
        if abs(time.time() - at) > TOLERANCE_S:
            raise InvalidSignature("signature timestamp outside the tolerance")
        expected = sign(self.secret, body, at).split("v1=", 1)[1]
        if not hmac.compare_digest(expected, given):
            raise InvalidSignature("signature does not match")
        try:
            data = json.loads(body)
            return WebhookEvent(
                event_id=str(data["id"]),
                type=data["type"],
                payment_id=uuid.UUID(data["payment_id"]),
                provider_ref=str(data["provider_ref"]),
                reason=data.get("reason"),
            )
        except (KeyError, ValueError, TypeError):
            raise InvalidSignature("signed body is not a payment event") from None
