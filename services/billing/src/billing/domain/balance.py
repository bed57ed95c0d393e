"""Balance standing: what gpuaas needs to know to gate and to stop. Pure rules.

ok        available > low threshold
low       0 < available <= low threshold         -> billing.balance.low, once per crossing
exhausted available <= 0                          -> billing.balance.exhausted, once per
                                                     crossing (gpuaas releases allocations)
Every change of a tenant's balance also emits billing.balance.changed with the standing.
"""

import enum


class Standing(enum.StrEnum):
    OK = "ok"
    LOW = "low"
    EXHAUSTED = "exhausted"


class BalanceEvent(enum.StrEnum):
    CHANGED = "billing.balance.changed"
    LOW = "billing.balance.low"
    EXHAUSTED = "billing.balance.exhausted"


_SEVERITY = {Standing.OK: 0, Standing.LOW: 1, Standing.EXHAUSTED: 2}


def standing_of(available_micros: int, low_threshold_micros: int) -> Standing:
    if available_micros <= 0:
        return Standing.EXHAUSTED
    if available_micros <= low_threshold_micros:
        return Standing.LOW
    return Standing.OK


def events_for(previous: Standing, current: Standing) -> list[BalanceEvent]:
    """The balance events one movement emits: always `changed`, plus `low` or `exhausted`
    when the standing crosses into it from a better one (never again while it stays)."""
    events = [BalanceEvent.CHANGED]
    if _SEVERITY[current] > _SEVERITY[previous]:
        events.append(BalanceEvent.LOW if current == Standing.LOW else BalanceEvent.EXHAUSTED)
    return events
