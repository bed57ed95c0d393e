"""The payment state machine and the sandbox's webhook signatures."""

import json
import time
import uuid

import pytest

from billing.domain.payments import IllegalTransition, PaymentStatus, path_to, transition
from billing.providers.base import InvalidSignature
from billing.providers.sandbox import SIGNATURE_HEADER, SandboxProvider, sign

S = PaymentStatus


class TestStateMachine:
    @pytest.mark.parametrize(
        ("current", "target"),
        [
            (S.INITIATED, S.PENDING),
            (S.INITIATED, S.FAILED),
            (S.PENDING, S.SETTLED),
            (S.PENDING, S.FAILED),
            (S.SETTLED, S.REFUNDED),
            # Stripe: a PaymentIntent whose card failed can still succeed (another card)
            (S.FAILED, S.SETTLED),
        ],
    )
    def test_allowed(self, current, target):
        assert transition(current, target) is True

    @pytest.mark.parametrize(
        ("current", "target"),
        [
            (S.SETTLED, S.FAILED),
            (S.FAILED, S.REFUNDED),
            (S.REFUNDED, S.SETTLED),
            (S.PENDING, S.INITIATED),
            (S.FAILED, S.PENDING),
        ],
    )
    def test_refused(self, current, target):
        with pytest.raises(IllegalTransition):
            transition(current, target)

    def test_repeats_are_no_ops_and_early_settlement_passes_through_pending(self):
        assert transition(S.SETTLED, S.SETTLED) is False
        assert path_to(S.SETTLED, S.SETTLED) == []
        assert path_to(S.INITIATED, S.SETTLED) == [S.PENDING, S.SETTLED]
        assert path_to(S.FAILED, S.FAILED) == []
        assert path_to(S.FAILED, S.SETTLED) == [S.SETTLED]


class TestSandboxSignature:
    def _provider(self):
        async def deliver(body, headers):  # pragma: no cover - not sent here
            pass

        return SandboxProvider(secret=b"s3cret", deliver=deliver)

    def _body(self):
        return json.dumps(
            {
                "id": "evt_1",
                "type": "payment.settled",
                "payment_id": str(uuid.uuid4()),
                "provider_ref": "sbx_1",
            }
        ).encode()

    def test_a_signed_body_verifies(self):
        body = self._body()
        event = self._provider().verify_webhook(
            body, {SIGNATURE_HEADER: sign(b"s3cret", body, int(time.time()))}
        )
        assert event.type == "payment.settled" and event.provider_ref == "sbx_1"

    @pytest.mark.parametrize("tamper", ["secret", "body", "stale"])
    def test_forgeries_are_refused(self, tamper):
        body, now = self._body(), int(time.time())
        secret = b"other" if tamper == "secret" else b"s3cret"
        at = now - 3600 if tamper == "stale" else now
        header = sign(secret, body, at)
        sent = body.replace(b"sbx_1", b"sbx_2") if tamper == "body" else body
        with pytest.raises(InvalidSignature):
            self._provider().verify_webhook(sent, {SIGNATURE_HEADER: header})
