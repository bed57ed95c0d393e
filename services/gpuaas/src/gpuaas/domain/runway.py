"""The minimum runway gate: a new allocation is refused when the tenant's available balance
would last less than the minimum runway at what its live allocations plus the new one burn.

Prices follow billing's rating (contracts/asyncapi/billing.yaml, `billing.price.v1`): the
price in effect at t for tenant T is T's override with the latest `effective_from <= t`,
else the public version (tenant null) with the latest `effective_from <= t`; an interval
costs `ceil(micros_per_hour * quantity * billable_seconds / 3600)`.
"""

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True, slots=True)
class PriceVersion:
    price_key: str
    tenant_id: uuid.UUID | None  # None: the public list price
    currency: str
    effective_from: dt.datetime
    micros_per_hour: int
    version: int


def price_in_effect(
    versions: Iterable[PriceVersion],
    price_key: str,
    tenant_id: uuid.UUID,
    currency: str,
    at: dt.datetime,
) -> PriceVersion | None:
    """The tenant's override in effect at `at`, else the public price; None when unpriced.
    Of two versions with the same effective instant the higher version wins."""
    override: PriceVersion | None = None
    public: PriceVersion | None = None
    for v in versions:
        if v.price_key != price_key or v.currency != currency or v.effective_from > at:
            continue
        if v.tenant_id == tenant_id:
            if override is None or _later(v, override):
                override = v
        elif v.tenant_id is None and (public is None or _later(v, public)):
            public = v
    return override or public


def _later(a: PriceVersion, b: PriceVersion) -> bool:
    return (a.effective_from, a.version) > (b.effective_from, b.version)


def cost_micros(micros_per_hour: int, quantity: int, seconds: int) -> int:
    """What `quantity` units cost for `seconds`, rounded up as billing rates it."""
    return -(-micros_per_hour * quantity * seconds // 3600)


def covers_runway(available_micros: int, burn_micros_per_hour: int, runway_s: int) -> bool:
    """True when the balance lasts at least `runway_s` at `burn_micros_per_hour`. A runway of
    0 disables the gate; nothing burning is always covered (even a zero balance)."""
    if runway_s <= 0 or burn_micros_per_hour <= 0:
        return True
    return available_micros >= cost_micros(burn_micros_per_hour, 1, runway_s)


def runway_seconds(available_micros: int, burn_micros_per_hour: int) -> int | None:
    """Whole seconds the balance lasts at this burn (None: forever), for messages."""
    if burn_micros_per_hour <= 0:
        return None
    return max(0, available_micros * 3600 // burn_micros_per_hour)
