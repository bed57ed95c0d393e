"""The runway arithmetic and the price-in-effect rule, without I/O."""

import datetime as dt
import math
import uuid

from hypothesis import given
from hypothesis import strategies as st

from gpuaas.domain.runway import (
    Burning,
    PriceVersion,
    burned_micros,
    cost_micros,
    covers_runway,
    hard_stop_due,
    money_refusal,
    price_in_effect,
    projected_balance,
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


class TestMoneyGate:
    """The gate on a new allocation fails closed: every missing fact refuses."""

    def test_no_standing_yet_is_refused(self):
        assert money_refusal(None, 3_600_000, 10**9, 3_600_000, 300) == "balance_unknown"
        assert money_refusal(None, None, 0, 0, 0) == "balance_unknown"  # even with the gate off

    def test_exhausted_is_refused(self):
        assert money_refusal("exhausted", 3_600_000, 0, 3_600_000, 300) == "balance_exhausted"
        assert money_refusal("exhausted", None, 0, 0, 0) == "balance_exhausted"

    def test_unknown_price_is_refused(self):
        assert money_refusal("ok", None, 10**9, 0, 300) == "price_unknown"
        assert money_refusal("low", None, 10**9, 0, 0) == "price_unknown"

    def test_runway(self):
        # 3.60/h for 300 s = 300_000 micros.
        assert money_refusal("low", 3_600_000, 299_999, 3_600_000, 300) == "insufficient_runway"
        assert money_refusal("low", 3_600_000, 300_000, 3_600_000, 300) is None
        assert money_refusal("ok", 3_600_000, 1, 3_600_000, 0) is None  # runway gate off

    def test_a_free_price_is_a_known_price(self):
        assert money_refusal("ok", 0, 1, 0, 300) is None


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


class TestProjection:
    """gpuaas's own projection of a balance: billing's available at as_of minus the burn
    since then (3.60/h = 1,000 micros a second)."""

    def test_burn_since_as_of_or_start(self):
        burning = [Burning(3_600_000, at(-50)), Burning(7_200_000, at(10))]
        # 100 s of the first since as_of (not 150), 90 s of the second since its start.
        assert projected_balance(1_000_000, at(0), burning, at(100)) == (
            1_000_000 - 100_000 - 180_000
        )

    def test_an_ended_allocation_burns_until_its_end(self):
        burning = [Burning(3_600_000, at(0), until=at(30)), Burning(3_600_000, at(-5), at(-1))]
        assert projected_balance(50_000, at(0), burning, at(100)) == 20_000

    def test_rounds_up_by_the_millisecond(self):
        assert burned_micros(1, at(0), at(0.001)) == 1
        assert burned_micros(3_600_000, at(0), at(1.5)) == 1_500
        assert burned_micros(3_600_000, at(2), at(1)) == 0

    def test_hard_stop_at_zero_minus_ten_seconds_of_burn(self):
        burning = [Burning(3_600_000, at(0))]  # 1,000 micros/s, 5,000 available: zero at 5 s
        assert not hard_stop_due(5_000, at(0), burning, at(14.999), 10)
        assert hard_stop_due(5_000, at(0), burning, at(15), 10)
        assert not hard_stop_due(5_000, at(0), burning, at(4.999), 0)
        assert hard_stop_due(5_000, at(0), burning, at(5), 0)

    def test_grace_is_the_current_burn_only(self):
        # The ended allocation counts in the projection but not in the grace's burn.
        burning = [Burning(3_600_000, at(0)), Burning(36_000_000, at(0), until=at(1))]
        # 20,000 - 10,000 (ended) - 1,000 a second: zero at 10 s, due at 20 s.
        assert not hard_stop_due(20_000, at(0), burning, at(19.9), 10)
        assert hard_stop_due(20_000, at(0), burning, at(20), 10)

    def test_nothing_running_is_never_due(self):
        assert not hard_stop_due(-(10**9), at(0), [], at(100), 10)
        assert not hard_stop_due(-(10**9), at(0), [Burning(3_600_000, at(0), at(1))], at(9), 0)
        assert not hard_stop_due(-(10**9), at(0), [Burning(0, at(0))], at(9), 0)

    def test_an_exhausted_balance_at_as_of_is_due_after_the_grace(self):
        burning = [Burning(3_600_000, at(-100))]
        assert not hard_stop_due(0, at(0), burning, at(9), 10)
        assert hard_stop_due(0, at(0), burning, at(10), 10)
