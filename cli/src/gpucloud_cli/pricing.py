"""The hourly price a launch will be charged, read from billing's price book the way billing
rates usage (docs/billing.md): the tenant's own version in effect now wins over the public
one; of several versions, the latest `effective_from` not after now."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import Any, Protocol


class PriceVersion(Protocol):
    price_key: str
    currency: str
    micros_per_gpu_hour: int
    effective_from: str
    tenant_id: str | None


@dataclasses.dataclass(frozen=True)
class Quote:
    price_key: str
    currency: str
    micros_per_gpu_hour: int
    count: int
    tenant_override: bool

    @property
    def hourly_micros(self) -> int:
        return self.micros_per_gpu_hour * self.count

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "hourly_micros": self.hourly_micros}


def _at(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def in_effect(
    prices: Iterable[PriceVersion],
    price_key: str,
    tenant_id: str | None,
    now: dt.datetime,
    currency: str | None = None,
) -> PriceVersion | None:
    """The version billing would rate an interval starting `now` at. Without a currency
    (the caller may not read the balance): the override's, else USD, else the first."""
    candidates = [
        p
        for p in prices
        if p.price_key == price_key
        and (p.tenant_id is None or p.tenant_id == tenant_id)
        and _at(p.effective_from) <= now
        and (currency is None or p.currency == currency)
    ]
    if not candidates:
        return None
    overrides = [p for p in candidates if p.tenant_id is not None]
    pool = overrides or candidates
    if currency is None:
        currencies = sorted({p.currency for p in pool})
        chosen = "USD" if "USD" in currencies else currencies[0]
        pool = [p for p in pool if p.currency == chosen]
    return max(pool, key=lambda p: _at(p.effective_from))


def quote(
    prices: Iterable[PriceVersion],
    price_key: str,
    count: int,
    tenant_id: str | None,
    now: dt.datetime,
) -> Quote | None:
    found = in_effect(prices, price_key, tenant_id, now)
    if found is None:
        return None
    return Quote(
        price_key=price_key,
        currency=found.currency,
        micros_per_gpu_hour=found.micros_per_gpu_hour,
        count=count,
        tenant_override=found.tenant_id is not None,
    )
