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

from gpuaas.domain.allocations import BALANCE_EXHAUSTED


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


# Why the money gate refuses a new allocation (the allocation's rejection `reason`).
BALANCE_UNKNOWN = "balance_unknown"
PRICE_UNKNOWN = "price_unknown"
INSUFFICIENT_RUNWAY = "insufficient_runway"


def money_refusal(
    standing: str | None,
    new_price_micros_per_hour: int | None,
    available_micros: int,
    burn_micros_per_hour: int,
    runway_s: int,
) -> str | None:
    """The money gate on a new (metered) allocation; it fails closed. The reason it is
    refused, or None: no balance standing projected yet (`balance_unknown`), an exhausted
    standing (`balance_exhausted`), no price in effect for the new allocation's key in the
    balance's currency (`price_unknown`), or a balance that does not last `runway_s` at
    `burn_micros_per_hour` (live allocations plus the new one; `insufficient_runway`)."""
    if standing is None:
        return BALANCE_UNKNOWN
    if standing == "exhausted":
        return BALANCE_EXHAUSTED
    if new_price_micros_per_hour is None:
        return PRICE_UNKNOWN
    if not covers_runway(available_micros, burn_micros_per_hour, runway_s):
        return INSUFFICIENT_RUNWAY
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Burning:
    """One allocation's burn: `micros_per_hour` (price x quantity) from `since` (when it
    started running) until `until` (when its final usage interval closed; None: it still
    runs)."""

    micros_per_hour: int
    since: dt.datetime
    until: dt.datetime | None = None


def burned_micros(micros_per_hour: int, start: dt.datetime, end: dt.datetime) -> int:
    """What `micros_per_hour` costs from `start` to `end` (milliseconds, rounded up; 0 when
    `end` is not after `start`)."""
    ms = (end - start) // dt.timedelta(milliseconds=1)
    return -(-micros_per_hour * ms // 3_600_000) if ms > 0 else 0


def projected_balance(
    available_micros: int, as_of: dt.datetime, burning: Iterable[Burning], now: dt.datetime
) -> int:
    """The balance at `now` as gpuaas projects it on its own: billing's `available_micros`
    at `as_of` minus what each allocation burned since max(`as_of`, its start) until now (or
    its end)."""
    spent = 0
    for b in burning:
        end = now if b.until is None else min(b.until, now)
        spent += burned_micros(b.micros_per_hour, max(as_of, b.since), end)
    return available_micros - spent


def hard_stop_due(
    available_micros: int,
    as_of: dt.datetime,
    burning: Iterable[Burning],
    now: dt.datetime,
    grace_s: float,
) -> bool:
    """True when the tenant's running allocations must be released (reason
    `balance_exhausted`): the projected balance is at or below zero minus the grace, i.e.
    `grace_s` seconds of the tenant's current burn (what still runs). Nothing running: never
    due."""
    burning = list(burning)
    burn = sum(b.micros_per_hour for b in burning if b.until is None)
    if burn <= 0:
        return False
    grace = burned_micros(burn, now, now + dt.timedelta(seconds=max(0.0, grace_s)))
    return projected_balance(available_micros, as_of, burning, now) <= -grace
