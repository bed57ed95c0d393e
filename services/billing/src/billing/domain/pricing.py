"""The price book and rating arithmetic. Pure: no I/O.

A price is micro-units per GPU-hour (per whole GPU or per MIG slice) for one price key and
currency, in effect from `effective_from` until a later version of the same key replaces
it. A tenant override is a version with a tenant id; when one is in effect at the moment of
use it wins over the public price. Usage is priced at the version in effect when it
*started*, so a late interval is rated at its own time's price, whenever it arrives.

Rating is to the second: the billable duration is the interval rounded up to whole seconds,
then up to a multiple of the price's minimum increment. The amount rounds up to the
micro-unit, so the platform never charges less than the price says (at most one micro-unit
more per interval).
"""

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable

MS_PER_HOUR = 3_600_000


@dataclasses.dataclass(frozen=True, slots=True)
class PriceVersion:
    price_key: str
    currency: str
    micros_per_gpu_hour: int
    effective_from: dt.datetime
    tenant_id: uuid.UUID | None = None
    min_increment_s: int = 1


class PriceBook:
    """The versions of the keys one batch needs, indexed for lookups at rating time."""

    def __init__(self, versions: Iterable[PriceVersion]) -> None:
        self._by_key: dict[tuple[str, str, uuid.UUID | None], list[PriceVersion]] = {}
        for version in versions:
            key = (version.price_key, version.currency, version.tenant_id)
            self._by_key.setdefault(key, []).append(version)
        for candidates in self._by_key.values():
            candidates.sort(key=lambda v: v.effective_from, reverse=True)
        # Most books hold no override: then a lookup never hashes the tenant's UUID (a
        # Python-level __hash__, once per interval at rating rates).
        self._has_overrides = any(owner is not None for _, _, owner in self._by_key)

    def price_at(
        self, price_key: str, currency: str, tenant_id: uuid.UUID, at: dt.datetime
    ) -> PriceVersion | None:
        if self._has_overrides:
            for version in self._by_key.get((price_key, currency, tenant_id), ()):
                if version.effective_from <= at:
                    return version
        for version in self._by_key.get((price_key, currency, None), ()):
            if version.effective_from <= at:
                return version
        return None


def billable_seconds(duration_ms: int, min_increment_s: int) -> int:
    if duration_ms <= 0:
        return 0
    seconds = -(-duration_ms // 1000)
    return -(-seconds // min_increment_s) * min_increment_s


def charge_micros(price: PriceVersion, quantity: int, duration_ms: int) -> tuple[int, int]:
    """(billable seconds, amount in micro-units) of `quantity` units for `duration_ms`."""
    seconds = billable_seconds(duration_ms, price.min_increment_s)
    amount = -(-(price.micros_per_gpu_hour * quantity * seconds) // 3600)
    return seconds, amount
