"""Top-ups through the Stripe adapter against stripe-mock (Stripe's official API mock): the
PaymentIntent is created through the real client; webhooks signed with the endpoint secret
settle or fail the payment once; a forged or stale signature is refused.

stripe-mock is installed by the fixture itself (`go install`, into a cache directory that later
runs reuse), so a fresh CI machine needs only Go; an install that fails fails the tests.
"""

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from billing.app.verify import verify_ledger
from billing.providers.base import RefundDeclined, RefundResult
from billing.providers.stripe import StripeProvider

from .conftest import OP, as_tenant, new_tenant, outbox_types

pytestmark = pytest.mark.integration

STRIPE_MOCK = "github.com/stripe/stripe-mock@v0.203.0"
WEBHOOK_SECRET = "whsec_test_" + uuid.uuid4().hex


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpucloud" / "stripe-mock"


def _install_stripe_mock() -> Path:
    """The cached binary, or `go install` into the cache; any failure fails the test."""
    bin_dir = _cache_dir()
    binary = bin_dir / "stripe-mock"
    if binary.exists():
        return binary
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        pytest.fail("stripe-mock is not cached and Go is not installed to build it")
    bin_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [go, "install", STRIPE_MOCK],
        env={**os.environ, "GOBIN": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0 or not binary.exists():
        pytest.fail(f"go install {STRIPE_MOCK} failed:\n{result.stderr[-3000:]}")
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def stripe_mock() -> Iterator[str]:
    binary = _install_stripe_mock()
    port = _free_port()
    # its HTTPS listener too: left to its default (:12112) it collides with any other
    # stripe-mock on the machine, and the process exits after serving its first requests
    process = subprocess.Popen(
        [
            str(binary),
            "-http-addr",
            f"127.0.0.1:{port}",
            "-https-addr",
            f"127.0.0.1:{_free_port()}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"stripe-mock did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def stripe_provider(client, stripe_mock) -> StripeProvider:
    provider = StripeProvider(
        api_key="sk_test_123", webhook_secret=WEBHOOK_SECRET, api_base=stripe_mock
    )
    client.app.state.payment_provider = provider
    return provider


def signed(body: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> dict[str, str]:
    """Stripe's documented scheme, computed independently of the library under test."""
    at = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={at},v1={mac}"}


def intent_event(payment: dict, kind: str = "payment_intent.succeeded", **intent) -> bytes:
    obj = {
        "id": payment["provider_ref"],
        "object": "payment_intent",
        "amount": payment["amount_micros"] // 10_000,
        "currency": payment["currency"].lower(),
        "metadata": {"payment_id": payment["id"]},
        "status": "succeeded" if kind == "payment_intent.succeeded" else "requires_payment_method",
        **intent,
    }
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": kind,
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj},
    }
    return json.dumps(event).encode()


def refund_event(refund: dict, status: str, **fields) -> bytes:
    """Stripe's `charge.refund.updated` of a refund billing asked for (its id in metadata)."""
    obj = {
        "id": refund["provider_ref"],
        "object": "refund",
        "amount": refund["amount_micros"] // 10_000,
        "currency": refund["currency"].lower(),
        "metadata": {"refund_id": refund["id"]},
        "status": status,
        **fields,
    }
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": "charge.refund.updated",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj},
    }
    return json.dumps(event).encode()


class PendingRefunds(StripeProvider):
    """Stripe's adapter, against stripe-mock, whose fixture refund is always `succeeded`:
    real Stripe answers `pending` for many payment methods (the outcome comes later by
    webhook), which is what this one reports after making the refund at stripe-mock."""

    async def refund(self, payment_ref, refund_id, amount_micros, currency):
        made = await super().refund(payment_ref, refund_id, amount_micros, currency)
        return RefundResult(made.provider_ref, "pending")


async def _pay(client, tenant, amount=25_000_000):
    headers = {**as_tenant(tenant, "billing"), "Idempotency-Key": uuid.uuid4().hex}
    r = await client.post(
        f"/v1/billing/tenants/{tenant}/payments", headers=headers, json={"amount_micros": amount}
    )
    assert r.status_code == 201, r.text
    return r.json()


async def _deliver(client, body: bytes, headers: dict[str, str]):
    return await client.post("/v1/billing/webhooks/stripe", content=body, headers=headers)


async def _status(client, tenant, payment_id):
    r = await client.get(f"/v1/billing/tenants/{tenant}/payments/{payment_id}", headers=OP)
    return r.json()["status"]


async def _wallet(client, tenant):
    r = await client.get(f"/v1/billing/tenants/{tenant}/balance", headers=OP)
    return r.json()["wallet_micros"]


class TestStripeAdapter:
    async def test_creates_a_payment_intent_at_stripe(self, stripe_mock):
        provider = StripeProvider("sk_test_123", WEBHOOK_SECRET, api_base=stripe_mock)
        created = await provider.create_payment(uuid.uuid4(), 12_340_000, "USD")
        assert created.provider_ref.startswith("pi_")
        assert created.client_secret and "_secret_" in created.client_secret
        assert created.client_secret not in repr(created)
        assert await provider.client_secret(created.provider_ref) == created.client_secret

    async def test_refunds_a_payment_intent_at_stripe(self, stripe_mock):
        provider = StripeProvider("sk_test_123", WEBHOOK_SECRET, api_base=stripe_mock)
        ref = (await provider.create_payment(uuid.uuid4(), 12_340_000, "USD")).provider_ref
        refund = await provider.refund(ref, uuid.uuid4(), 2_340_000, "USD")
        assert refund.provider_ref.startswith("re_")
        assert refund.status == "succeeded"  # stripe-mock's fixture refund
        with pytest.raises(RefundDeclined):  # not a whole number of cents: never rounded
            await provider.refund(ref, uuid.uuid4(), 2_345, "USD")

    async def test_settlement_report_reads_the_intent_list(self, stripe_mock):
        """What stripe-mock can show: the list call, its paging and filtering run against
        Stripe's real API shape. Its fixture intents are never `succeeded` and carry no
        billing payment id, so the report is empty; the content of a real report cannot be
        checked here."""
        provider = StripeProvider("sk_test_123", WEBHOOK_SECRET, api_base=stripe_mock)
        now = dt.datetime.now(dt.UTC)
        report = await provider.settlement_report(now - dt.timedelta(days=1), now)
        assert report == []


class TestStripePayments:
    async def test_signed_webhook_settles_and_credits_once(self, client, db, stripe_provider):
        tenant = await new_tenant(db)
        payment = await _pay(client, tenant)
        assert payment["status"] == "pending" and payment["provider"] == "stripe"
        assert payment["provider_ref"].startswith("pi_")
        assert await _wallet(client, tenant) == 0  # credited on settlement only

        body = intent_event(payment)
        r = await _deliver(client, body, signed(body))
        assert r.status_code == 200 and r.json() == {"result": "settled"}, r.text
        assert await _status(client, tenant, payment["id"]) == "settled"
        assert await _wallet(client, tenant) == 25_000_000

        # Stripe retries a delivery with the same event id: nothing changes
        r = await _deliver(client, body, signed(body))
        assert r.json() == {"result": "duplicate"}
        # a second event settling the same intent does not credit again
        again = intent_event(payment)
        r = await _deliver(client, again, signed(again))
        assert r.json() == {"result": "unchanged"}
        assert await _wallet(client, tenant) == 25_000_000
        assert (await verify_ledger(db)).ok

    async def test_refund_through_stripe(self, client, db, stripe_provider):
        tenant = await new_tenant(db)
        payment = await _pay(client, tenant)
        body = intent_event(payment)
        assert (await _deliver(client, body, signed(body))).json() == {"result": "settled"}
        r = await client.post(
            f"/v1/billing/tenants/{tenant}/payments/{payment['id']}/refunds",
            headers={**as_tenant(tenant, "billing"), "Idempotency-Key": uuid.uuid4().hex},
            json={"amount_micros": 10_000_000},
        )
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "succeeded" and r.json()["provider_ref"].startswith("re_")
        assert await _status(client, tenant, payment["id"]) == "partially_refunded"
        assert await _wallet(client, tenant) == 15_000_000
        assert (await verify_ledger(db)).ok

    async def test_an_unreachable_stripe_is_a_503_and_the_same_key_asks_again(
        self, client, db, stripe_provider, stripe_mock
    ):
        tenant = await new_tenant(db)
        payment = await _pay(client, tenant)
        body = intent_event(payment)
        assert (await _deliver(client, body, signed(body))).json() == {"result": "settled"}
        refund = {
            "url": f"/v1/billing/tenants/{tenant}/payments/{payment['id']}/refunds",
            "headers": {**as_tenant(tenant, "billing"), "Idempotency-Key": uuid.uuid4().hex},
            "json": {"amount_micros": 10_000_000},
        }
        client.app.state.payment_provider = StripeProvider(
            api_key="sk_test_123", webhook_secret=WEBHOOK_SECRET, api_base="http://127.0.0.1:9"
        )
        r = await client.post(**refund)
        assert r.status_code == 503, r.text
        assert "same Idempotency-Key" in r.json()["detail"]
        # the hold stays: the wallet cannot be spent twice while the outcome is unknown
        assert await _wallet(client, tenant) == 15_000_000
        client.app.state.payment_provider = stripe_provider
        r = await client.post(**refund)
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "succeeded"
        assert await _wallet(client, tenant) == 15_000_000
        assert (await verify_ledger(db)).ok

    async def test_failed_intent_fails_the_payment(self, client, db, stripe_provider):
        tenant = await new_tenant(db)
        payment = await _pay(client, tenant)
        body = intent_event(
            payment,
            "payment_intent.payment_failed",
            last_payment_error={"code": "card_declined", "message": "declined"},
        )
        r = await _deliver(client, body, signed(body))
        assert r.json() == {"result": "failed"}, r.text
        r = await client.get(f"/v1/billing/tenants/{tenant}/payments/{payment['id']}", headers=OP)
        assert r.json()["status"] == "failed" and r.json()["failure_reason"] == "card_declined"
        assert await _wallet(client, tenant) == 0

    async def test_the_client_secret_goes_to_the_caller_only(
        self, client, db, billing_url, stripe_mock, caplog
    ):
        """The top-up's answer (and a repeat of its Idempotency-Key) carries the intent's
        client_secret for Stripe.js; no read returns it, and it is in no log line (at DEBUG,
        where the Stripe library would log response bodies) and no row of billing's
        database (payments, outbox, idempotency keys, provider events, ...)."""
        caplog.set_level(logging.DEBUG)
        client.app.state.payment_provider = StripeProvider(
            "sk_test_123", WEBHOOK_SECRET, api_base=stripe_mock
        )
        tenant = await new_tenant(db)
        headers = {**as_tenant(tenant, "billing"), "Idempotency-Key": uuid.uuid4().hex}
        url = f"/v1/billing/tenants/{tenant}/payments"
        r = await client.post(url, headers=headers, json={"amount_micros": 25_000_000})
        assert r.status_code == 201, r.text
        payment = r.json()
        secret = payment["client_secret"]
        assert secret and "_secret_" in secret and payment["status"] == "pending"

        again = await client.post(url, headers=headers, json={"amount_micros": 25_000_000})
        assert again.status_code == 201
        assert again.json()["id"] == payment["id"] and again.json()["client_secret"] == secret

        read = await client.get(f"{url}/{payment['id']}", headers=OP)
        assert read.status_code == 200 and "client_secret" not in read.json()
        assert secret not in read.text

        body = intent_event(payment)  # settled: nothing left to confirm
        assert (await _deliver(client, body, signed(body))).json() == {"result": "settled"}
        settled = await client.post(url, headers=headers, json={"amount_micros": 25_000_000})
        assert settled.json()["status"] == "settled" and settled.json()["client_secret"] is None

        assert secret not in caplog.text
        with psycopg.connect(billing_url) as conn:
            tables = [
                t
                for (t,) in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            ]
            assert {"payments", "outbox", "idempotency_keys", "provider_events"} <= set(tables)
            for table in tables:
                rows = conn.execute(f'SELECT t::text FROM "{table}" t').fetchall()  # noqa: S608
                assert not [row for (row,) in rows if secret in row], table

    async def test_success_after_a_failure_credits_once(self, client, db, stripe_provider):
        """The customer's first card is declined (payment_failed), they retry with another
        card on the same PaymentIntent (succeeded): the captured money is credited, once,
        however often Stripe delivers the success or reports it again."""
        tenant = await new_tenant(db)
        payment = await _pay(client, tenant)
        failed = intent_event(
            payment, "payment_intent.payment_failed", last_payment_error={"code": "card_declined"}
        )
        assert (await _deliver(client, failed, signed(failed))).json() == {"result": "failed"}
        assert await _wallet(client, tenant) == 0

        succeeded = intent_event(payment)
        r = await _deliver(client, succeeded, signed(succeeded))
        assert r.status_code == 200 and r.json() == {"result": "settled"}, r.text
        r = await client.get(f"/v1/billing/tenants/{tenant}/payments/{payment['id']}", headers=OP)
        assert r.json()["status"] == "settled" and r.json()["failure_reason"] is None
        assert await _wallet(client, tenant) == 25_000_000

        r = await _deliver(client, succeeded, signed(succeeded))  # Stripe's redelivery
        assert r.json() == {"result": "duplicate"}
        again = intent_event(payment)  # another event id reporting the same success
        assert (await _deliver(client, again, signed(again))).json() == {"result": "unchanged"}
        # the first failure delivered again (late) changes nothing either
        assert (await _deliver(client, failed, signed(failed))).json() == {"result": "duplicate"}
        assert await _wallet(client, tenant) == 25_000_000
        assert await outbox_types(db, payment["id"]) == [
            "billing.payment.failed",
            "billing.payment.settled",
        ]
        assert (await verify_ledger(db)).ok

    async def test_forged_signature_is_refused(self, client, db, stripe_provider):
        tenant = await new_tenant(db)
        payment = await _pay(client, tenant)
        body = intent_event(payment)
        stale = int(time.time()) - 3600
        for headers in (
            signed(body, secret="whsec_forged"),
            signed(body, at=stale),  # a replay outside Stripe's 300 s tolerance
            {"Stripe-Signature": "t=1,v1=00"},
            {},
        ):
            r = await _deliver(client, body, headers)
            assert r.status_code == 400, r.text
        tampered = body.replace(b"succeeded", b"succeeded ")
        r = await _deliver(client, tampered, signed(body))
        assert r.status_code == 400
        assert await _status(client, tenant, payment["id"]) == "pending"
        assert await _wallet(client, tenant) == 0

    async def test_authentic_unrelated_event_is_ignored(self, client, db, stripe_provider):
        tenant = await new_tenant(db)
        payment = await _pay(client, tenant)
        body = intent_event(payment, "payment_intent.created")
        r = await _deliver(client, body, signed(body))
        assert r.json() == {"result": "ignored"}
        assert await _status(client, tenant, payment["id"]) == "pending"

    async def test_sandbox_route_refuses_when_stripe_is_configured(
        self, client, db, stripe_provider
    ):
        r = await client.post("/v1/billing/webhooks/sandbox", content=b"{}")
        assert r.status_code == 404


class TestStripeRefundWebhooks:
    """A refund Stripe answered `pending` is resolved by its `charge.refund.updated`: succeeded
    keeps the wallet debit and moves the payment; failed or canceled reverses the debit and
    releases the reservation. Once, however often Stripe delivers."""

    @pytest.fixture
    def stripe_provider(self, client, stripe_mock) -> StripeProvider:
        provider = PendingRefunds("sk_test_123", WEBHOOK_SECRET, api_base=stripe_mock)
        client.app.state.payment_provider = provider
        return provider

    async def _pending_refund(self, client, db, amount=10_000_000):
        tenant = await new_tenant(db)
        payment = await _pay(client, tenant)
        body = intent_event(payment)
        assert (await _deliver(client, body, signed(body))).json() == {"result": "settled"}
        r = await client.post(
            f"/v1/billing/tenants/{tenant}/payments/{payment['id']}/refunds",
            headers={**as_tenant(tenant, "billing"), "Idempotency-Key": uuid.uuid4().hex},
            json={"amount_micros": amount},
        )
        assert r.status_code == 201, r.text
        refund = r.json()
        assert refund["status"] == "pending" and refund["provider_ref"].startswith("re_")
        assert await _wallet(client, tenant) == 25_000_000 - amount  # held while pending
        return tenant, payment, refund

    async def _refund(self, client, tenant, refund_id):
        r = await client.get(f"/v1/billing/tenants/{tenant}/refunds/{refund_id}", headers=OP)
        assert r.status_code == 200, r.text
        return r.json()

    async def test_succeeded_finalizes_the_debit_once(self, client, db, stripe_provider):
        tenant, payment, refund = await self._pending_refund(client, db)
        body = refund_event(refund, "succeeded")
        r = await _deliver(client, body, signed(body))
        assert r.status_code == 200 and r.json() == {"result": "refund_succeeded"}, r.text
        assert (await self._refund(client, tenant, refund["id"]))["status"] == "succeeded"
        assert await _status(client, tenant, payment["id"]) == "partially_refunded"
        assert await _wallet(client, tenant) == 15_000_000

        assert (await _deliver(client, body, signed(body))).json() == {"result": "duplicate"}
        late = refund_event(refund, "failed")  # a succeeded refund is final here
        assert (await _deliver(client, late, signed(late))).json() == {"result": "unchanged"}
        assert await _wallet(client, tenant) == 15_000_000
        assert await outbox_types(db, payment["id"]) == [
            "billing.payment.settled",
            "billing.payment.refunded",
        ]
        assert (await verify_ledger(db)).ok

    @pytest.mark.parametrize("status", ["failed", "canceled"])
    async def test_failed_or_canceled_reverses_the_hold(self, client, db, stripe_provider, status):
        tenant, payment, refund = await self._pending_refund(client, db)
        body = refund_event(refund, status, failure_reason="expired_or_canceled_card")
        r = await _deliver(client, body, signed(body))
        assert r.json() == {"result": "refund_failed"}, r.text
        after = await self._refund(client, tenant, refund["id"])
        assert after["status"] == "failed" and "expired_or_canceled_card" in after["failure_reason"]
        assert await _status(client, tenant, payment["id"]) == "settled"
        assert await _wallet(client, tenant) == 25_000_000  # the debit reversed

        assert (await _deliver(client, body, signed(body))).json() == {"result": "duplicate"}
        again = refund_event(refund, status)
        assert (await _deliver(client, again, signed(again))).json() == {"result": "unchanged"}
        assert await _wallet(client, tenant) == 25_000_000
        assert await outbox_types(db, payment["id"]) == [
            "billing.payment.settled",
            "billing.payment.refund_failed",
        ]
        async with db.unit_of_work() as uow:
            kinds = await uow.fetch_all(
                "SELECT kind FROM transfers WHERE tenant_id = :t ORDER BY tenant_seq",
                {"t": tenant},
            )
        assert [k["kind"] for k in kinds] == ["top_up", "refund", "reversal"]
        # the reservation is released: the whole payment is refundable again
        r = await client.post(
            f"/v1/billing/tenants/{tenant}/payments/{payment['id']}/refunds",
            headers={**as_tenant(tenant, "billing"), "Idempotency-Key": uuid.uuid4().hex},
            json={},
        )
        assert r.status_code == 201 and r.json()["amount_micros"] == 25_000_000, r.text
        assert (await verify_ledger(db)).ok

    async def test_still_pending_keeps_the_hold(self, client, db, stripe_provider):
        tenant, _, refund = await self._pending_refund(client, db)
        body = refund_event(refund, "pending")
        assert (await _deliver(client, body, signed(body))).json() == {"result": "unchanged"}
        assert (await self._refund(client, tenant, refund["id"]))["status"] == "pending"
        assert await _wallet(client, tenant) == 15_000_000

    async def test_another_refund_id_of_the_same_refund_is_refused(
        self, client, db, stripe_provider
    ):
        tenant, _, refund = await self._pending_refund(client, db)
        body = refund_event({**refund, "provider_ref": "re_someone_else"}, "succeeded")
        r = await _deliver(client, body, signed(body))
        assert r.status_code == 409, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert (await self._refund(client, tenant, refund["id"]))["status"] == "pending"

    async def test_a_refund_billing_did_not_make_is_ignored(self, client, db, stripe_provider):
        """A refund made in Stripe's dashboard carries no billing refund id."""
        tenant, _, refund = await self._pending_refund(client, db)
        body = json.loads(refund_event(refund, "succeeded"))
        body["data"]["object"]["metadata"] = {}
        raw = json.dumps(body).encode()
        assert (await _deliver(client, raw, signed(raw))).json() == {"result": "ignored"}
        assert (await self._refund(client, tenant, refund["id"]))["status"] == "pending"
