"""Payments: the state machine of a top-up. Pure rules.

    initiated -> pending -> settled -> refunded
    initiated | pending -> failed

The ledger is credited on `settled` only (clearing -> wallet, transfer id derived from the
payment id). A transition to the state a payment is already in is a no-op (a provider that
repeats itself); any other transition not listed is refused.
"""

import enum


class PaymentStatus(enum.StrEnum):
    INITIATED = "initiated"
    PENDING = "pending"
    SETTLED = "settled"
    FAILED = "failed"
    REFUNDED = "refunded"


class PaymentEvent(enum.StrEnum):
    SETTLED = "billing.payment.settled"
    FAILED = "billing.payment.failed"


PAYMENT_TOPIC = "billing.payment.v1"

_ALLOWED = {
    PaymentStatus.INITIATED: {PaymentStatus.PENDING, PaymentStatus.FAILED},
    PaymentStatus.PENDING: {PaymentStatus.SETTLED, PaymentStatus.FAILED},
    PaymentStatus.SETTLED: {PaymentStatus.REFUNDED},
    PaymentStatus.FAILED: set(),
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
