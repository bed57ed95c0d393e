"""The runway arithmetic and the price-in-effect rule, without I/O."""

import datetime as dt
import math
import uuid

from hypothesis import given
from hypothesis import strategies as st

from gpuaas.domain.runway import (
    PriceVersion,
    cost_micros,
    covers_runway,
    price_in_effect,
    runway_seconds,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TENANT = uuid.UUID(int=7)
OTHER = uuid.UUID(int=8)


def v(mph, *, tenant=None, at=0, version=1, key="gpu:h100-80gb", currency="USD"):
    return PriceVersion(key, tenant, currency, T0 + dt.timedelta(hours=at), mph, version)


def test_cost_rounds_up_like_billing():
    assert cost_micros(3_600_000, 1, 300) == 300_000
    assert cost_micros(1, 1, 1) == 1  # ceil(1/3600)
    assert cost_micros(7, 3, 10) == math.ceil(7 * 3 * 10 / 3600)


def test_covers_runway_boundary():
    # 2.5 units/h for 300 s = 750_000 micros exactly.
    assert covers_runway(750_000, 9_000_000, 300)
    assert not covers_runway(749_999, 9_000_000, 300)
    assert covers_runway(0, 0, 300)  # nothing burns
    assert covers_runway(-5, 9_000_000, 0)  # gate off
    assert not covers_runway(-1, 1, 1)


@given(
    available=st.integers(-(10**12), 10**12),
    burn=st.integers(1, 10**12),
    runway=st.integers(1, 86_400),
)
def test_covers_iff_balance_pays_the_runway(available, burn, runway):
    # An integer balance covers ceil(x) exactly when it covers x.
    assert covers_runway(available, burn, runway) == (available * 3600 >= burn * runway)
    # The gate and the reported runway never disagree.
    assert covers_runway(available, burn, runway) == (runway_seconds(available, burn) >= runway)


def test_override_beats_public_and_latest_effective_wins():
    versions = [
        v(100, at=0, version=1),
        v(200, at=2, version=2),  # public, later
        v(50, tenant=TENANT, at=1, version=3),
        v(10, tenant=OTHER, at=0, version=4),
        v(70, tenant=TENANT, at=5, version=5),  # future at t=3
        v(1, at=0, version=6, currency="EUR"),
        v(2, at=0, version=7, key="gpu:a100-40gb"),
    ]
    at = T0 + dt.timedelta(hours=3)
    assert price_in_effect(versions, "gpu:h100-80gb", TENANT, "USD", at).micros_per_hour == 50
    assert price_in_effect(versions, "gpu:h100-80gb", OTHER, "USD", at).micros_per_hour == 10
    assert price_in_effect(versions, "gpu:h100-80gb", uuid.uuid4(), "USD", at).version == 2
    assert price_in_effect(versions, "gpu:h100-80gb", TENANT, "USD", T0).micros_per_hour == 100
    assert price_in_effect(versions, "gpu:h200-141gb", TENANT, "USD", at) is None
    assert price_in_effect(versions, "gpu:h100-80gb", TENANT, "GBP", at) is None


@given(st.lists(st.tuples(st.integers(0, 5), st.booleans(), st.integers(0, 10)), max_size=12))
def test_price_in_effect_matches_the_definition(raw):
    versions = [
        v(mph, tenant=TENANT if own else None, at=at, version=i + 1)
        for i, (at, own, mph) in enumerate(raw)
    ]
    at = T0 + dt.timedelta(hours=3)
    got = price_in_effect(versions, "gpu:h100-80gb", TENANT, "USD", at)
    own = [x for x in versions if x.tenant_id == TENANT and x.effective_from <= at]
    public = [x for x in versions if x.tenant_id is None and x.effective_from <= at]
    pool = own or public
    want = max(pool, key=lambda x: (x.effective_from, x.version)) if pool else None
    assert got == want
