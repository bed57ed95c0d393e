"""Payments and refunds: the state machines of a top-up and of each refund. Pure rules.

Payment:

    initiated -> pending -> settled -> refunded
                              settled -> partially_refunded -> refunded
                   partially_refunded -> partially_refunded (a further partial refund)
    initiated | pending -> failed -> settled

`failed -> settled`: a Stripe PaymentIntent reports `payment_failed` when a card is declined
and stays open; the customer may retry with another card and the same intent then reports
`succeeded`. The money was captured, so the payment settles and is credited.

The ledger is credited on `settled` only (clearing -> wallet, transfer id derived from the
payment id). A transition to the state a payment is already in is a no-op (a provider that
repeats itself); any other transition not listed is refused.

Refund (its own row; a payment may be refunded in several parts):

    requested -> pending | succeeded | failed
    pending -> pending | succeeded | failed

`succeeded` and `failed` are final: a later answer of the provider changes nothing.
"""

import enum


class PaymentStatus(enum.StrEnum):
    INITIATED = "initiated"
    PENDING = "pending"
    SETTLED = "settled"
    FAILED = "failed"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class PaymentEvent(enum.StrEnum):
    SETTLED = "billing.payment.settled"
    FAILED = "billing.payment.failed"
    REFUNDED = "billing.payment.refunded"
    REFUND_FAILED = "billing.payment.refund_failed"


_ALLOWED = {
    PaymentStatus.INITIATED: {PaymentStatus.PENDING, PaymentStatus.FAILED},
    PaymentStatus.PENDING: {PaymentStatus.SETTLED, PaymentStatus.FAILED},
    PaymentStatus.SETTLED: {PaymentStatus.REFUNDED, PaymentStatus.PARTIALLY_REFUNDED},
    PaymentStatus.PARTIALLY_REFUNDED: {PaymentStatus.REFUNDED},
    PaymentStatus.FAILED: {PaymentStatus.SETTLED},
    PaymentStatus.REFUNDED: set(),
}


class IllegalTransition(ValueError):
    pass


def transition(current: PaymentStatus, target: PaymentStatus) -> bool:
    """True when the payment must move; False when it is already there; raises otherwise."""
    if current == target:
        return False
    if target not in _ALLOWED[current]:
        raise IllegalTransition(f"a {current} payment cannot become {target}")
    return True


def path_to(current: PaymentStatus, target: PaymentStatus) -> list[PaymentStatus]:
    """The states to pass through: a provider may report settlement before we recorded the
    payment as pending (its webhook can overtake our own bookkeeping)."""
    if current == PaymentStatus.INITIATED and target == PaymentStatus.SETTLED:
        return [PaymentStatus.PENDING, PaymentStatus.SETTLED]
    return [target] if transition(current, target) else []


REFUNDABLE = frozenset({PaymentStatus.SETTLED, PaymentStatus.PARTIALLY_REFUNDED})


class RefundRefused(ValueError):
    """A refund the payment cannot take; `field` names the request field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_refund(
    status: PaymentStatus, amount: int, refunded: int, reserved: int, requested: int
) -> None:
    """A refund of `requested` micro-units is allowed on a settled (or partly refunded)
    payment, for at most what is neither refunded nor reserved by a refund in flight."""
    if status not in REFUNDABLE:
        raise RefundRefused("payment_id", f"a {status} payment cannot be refunded")
    if requested <= 0:
        raise RefundRefused("amount_micros", "must be >= 1")
    left = amount - refunded - reserved
    if requested > left:
        raise RefundRefused("amount_micros", f"at most {left} micro-units are refundable")


def status_after_refund(status: PaymentStatus, amount: int, refunded: int) -> PaymentStatus:
    """The payment's state once `refunded` micro-units (all succeeded refunds) are back."""
    target = PaymentStatus.REFUNDED if refunded >= amount else PaymentStatus.PARTIALLY_REFUNDED
    transition(status, target)  # raises on an illegal edge; a further partial refund stays
    return target


class RefundStatus(enum.StrEnum):
    REQUESTED = "requested"
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


_REFUND_ALLOWED = {
    RefundStatus.REQUESTED: {RefundStatus.PENDING, RefundStatus.SUCCEEDED, RefundStatus.FAILED},
    RefundStatus.PENDING: {RefundStatus.PENDING, RefundStatus.SUCCEEDED, RefundStatus.FAILED},
    RefundStatus.SUCCEEDED: set(),
    RefundStatus.FAILED: set(),
}
FINAL_REFUND = frozenset({RefundStatus.SUCCEEDED, RefundStatus.FAILED})


def refund_transition(current: RefundStatus, outcome: RefundStatus) -> bool:
    """True when the provider's `outcome` moves the refund; False when the refund is final
    already (the answer is ignored); raises on an edge that does not exist."""
    if current in FINAL_REFUND:
        return False
    if outcome not in _REFUND_ALLOWED[current]:
        raise IllegalTransition(f"a {current} refund cannot become {outcome}")
    return True
