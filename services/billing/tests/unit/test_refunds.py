"""Refund rules of the payment state machine: what may be refunded, and the payment's state
after each refund. Property: any sequence of refund requests never refunds more than paid."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.domain.payments import (
    IllegalTransition,
    PaymentStatus,
    RefundRefused,
    check_refund,
    status_after_refund,
    transition,
)

S = PaymentStatus


class TestRefundRules:
    @pytest.mark.parametrize("status", [S.INITIATED, S.PENDING, S.FAILED, S.REFUNDED])
    def test_only_settled_payments_are_refundable(self, status):
        with pytest.raises(RefundRefused) as refused:
            check_refund(status, 100, 0, 0, 1)
        assert refused.value.field == "payment_id"

    def test_at_most_what_is_neither_refunded_nor_reserved(self):
        check_refund(S.PARTIALLY_REFUNDED, 100, 30, 20, 50)
        with pytest.raises(RefundRefused) as refused:
            check_refund(S.PARTIALLY_REFUNDED, 100, 30, 20, 51)
        assert refused.value.field == "amount_micros"
        with pytest.raises(RefundRefused):
            check_refund(S.SETTLED, 100, 0, 0, 0)

    def test_state_after_refunds(self):
        assert status_after_refund(S.SETTLED, 100, 40) == S.PARTIALLY_REFUNDED
        assert status_after_refund(S.PARTIALLY_REFUNDED, 100, 70) == S.PARTIALLY_REFUNDED
        assert status_after_refund(S.PARTIALLY_REFUNDED, 100, 100) == S.REFUNDED
        assert status_after_refund(S.SETTLED, 100, 100) == S.REFUNDED

    def test_refund_edges(self):
        assert transition(S.SETTLED, S.PARTIALLY_REFUNDED) is True
        assert transition(S.PARTIALLY_REFUNDED, S.REFUNDED) is True
        for target in (S.SETTLED, S.PENDING, S.FAILED):
            with pytest.raises(IllegalTransition):
                transition(S.PARTIALLY_REFUNDED, target)
        with pytest.raises(IllegalTransition):
            transition(S.REFUNDED, S.PARTIALLY_REFUNDED)
        with pytest.raises(IllegalTransition):
            status_after_refund(S.PENDING, 100, 10)

    @given(
        amount=st.integers(1, 10_000),
        requests=st.lists(st.tuples(st.integers(1, 5_000), st.booleans()), max_size=20),
    )
    def test_refunds_never_exceed_the_payment(self, amount, requests):
        status, refunded = S.SETTLED, 0
        for requested, succeeds in requests:
            try:
                check_refund(status, amount, refunded, 0, requested)
            except RefundRefused:
                assert status == S.REFUNDED or requested > amount - refunded
                continue
            if succeeds:  # a declined refund changes nothing
                refunded += requested
                status = status_after_refund(status, amount, refunded)
            assert refunded <= amount
            assert (status == S.REFUNDED) == (refunded == amount)
