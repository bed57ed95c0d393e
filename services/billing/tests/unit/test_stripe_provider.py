"""The Stripe adapter without I/O: money conversion and webhook verification through
`stripe.Webhook.construct_event`, signed here by Stripe's documented scheme."""

import hashlib
import hmac
import json
import time
import uuid

import pytest

from billing.bootstrap import payment_provider
from billing.providers.base import InvalidSignature
from billing.providers.sandbox import SandboxProvider
from billing.providers.stripe import StripeProvider, to_micros, to_minor_units
from billing.settings import BillingSettings

SECRET = "whsec_unit"
# no request is made: a closed port makes any accidental call fail loudly
PROVIDER = StripeProvider("sk_test_123", SECRET, api_base="http://127.0.0.1:9")


def signed(body: bytes, secret: str = SECRET, at: int | None = None) -> dict[str, str]:
    at = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={at},v1={mac}"}


def event(kind: str, payment_id: str | None, **intent) -> bytes:
    metadata = {"payment_id": payment_id} if payment_id else {}
    obj = {"id": "pi_1", "object": "payment_intent", "metadata": metadata, **intent}
    body = {"id": "evt_1", "object": "event", "type": kind, "data": {"object": obj}}
    return json.dumps(body).encode()


def test_amounts_convert_to_whole_minor_units_or_are_refused():
    assert to_minor_units(12_340_000, "USD") == 1234
    assert to_minor_units(5_000_000, "JPY") == 5
    assert to_micros(1234, "usd") == 12_340_000
    with pytest.raises(ValueError):
        to_minor_units(12_345, "USD")  # 0.012345 USD is no whole number of cents


def test_succeeded_and_failed_intents_become_payment_events():
    payment_id = str(uuid.uuid4())
    body = event("payment_intent.succeeded", payment_id)
    settled = PROVIDER.verify_webhook(body, signed(body))
    assert settled is not None and settled.type == "payment.settled"
    assert (str(settled.payment_id), settled.provider_ref, settled.event_id) == (
        payment_id,
        "pi_1",
        "evt_1",
    )
    body = event(
        "payment_intent.payment_failed", payment_id, last_payment_error={"code": "card_declined"}
    )
    failed = PROVIDER.verify_webhook(body, signed(body))
    assert failed is not None and (failed.type, failed.reason) == (
        "payment.failed",
        "card_declined",
    )


def test_authentic_events_billing_did_not_start_are_ignored():
    for body in (
        event("customer.created", str(uuid.uuid4())),
        event("payment_intent.succeeded", None),  # another integration's intent
    ):
        assert PROVIDER.verify_webhook(body, signed(body)) is None


def test_forged_stale_tampered_or_missing_signatures_are_refused():
    body = event("payment_intent.succeeded", str(uuid.uuid4()))
    for body_sent, headers in (
        (body, signed(body, secret="whsec_forged")),
        (body, signed(body, at=int(time.time()) - 3600)),  # outside the 300 s tolerance
        (body, {"Stripe-Signature": "t=1,v1=00"}),
        (body, {}),
        (body.replace(b"evt_1", b"evt_2"), signed(body)),
    ):
        with pytest.raises(InvalidSignature):
            PROVIDER.verify_webhook(body_sent, headers)


def test_a_signed_body_that_is_not_json_is_refused():
    body = b"not json"
    with pytest.raises(InvalidSignature):
        PROVIDER.verify_webhook(body, signed(body))


def test_settings_select_the_provider_and_stripe_needs_its_secrets():
    sandbox = BillingSettings(payment_provider="sandbox", sandbox_payments=True)
    assert isinstance(payment_provider(sandbox, "http://x"), SandboxProvider)
    chosen = payment_provider(
        BillingSettings(
            payment_provider="stripe",
            stripe_api_key="sk_test_secret",
            stripe_webhook_secret="whsec_secret",
            stripe_api_base="http://127.0.0.1:12111",
        ),
        "http://x",
    )
    assert isinstance(chosen, StripeProvider) and chosen.api_base == "http://127.0.0.1:12111"
    assert "secret" not in repr(chosen)  # keys never reach a log line
    for broken in (
        BillingSettings(payment_provider="stripe", stripe_api_key="sk_test_secret"),
        BillingSettings(payment_provider="paypal"),
    ):
        with pytest.raises(RuntimeError):
            payment_provider(broken, "http://x")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (BillingSettings(), "GPUCLOUD_BILLING_PAYMENT_PROVIDER is not set: choose stripe"),
        (
            BillingSettings(payment_provider="sandbox"),
            "without money: set GPUCLOUD_BILLING_SANDBOX_PAYMENTS=true",
        ),
    ],
)
def test_no_provider_is_chosen_for_you_and_the_sandbox_only_when_meant(settings, message):
    with pytest.raises(RuntimeError, match=message):
        payment_provider(settings, "http://x")


def test_settings_read_the_sandbox_switch(monkeypatch):
    monkeypatch.delenv("GPUCLOUD_BILLING_PAYMENT_PROVIDER", raising=False)
    monkeypatch.delenv("GPUCLOUD_BILLING_SANDBOX_PAYMENTS", raising=False)
    assert BillingSettings.from_env().payment_provider == ""
    assert BillingSettings.from_env().sandbox_payments is False
    monkeypatch.setenv("GPUCLOUD_BILLING_SANDBOX_PAYMENTS", "true")
    assert BillingSettings.from_env().sandbox_payments is True
