"""The idle-stop decision and the activity merge, pure (no I/O)."""

import dataclasses
import datetime as dt
import uuid

from hypothesis import given
from hypothesis import strategies as st

from gpuaas.domain.allocations import (
    AllocationState,
    idle_stop_error,
    is_idle,
    later_activity,
    new_allocation,
    transition,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _running(policy: int | None, at: dt.datetime = T0):
    a, _ = new_allocation(
        uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "h100-80gb", None, 1, at, policy
    )
    a, _ = transition(a, AllocationState.SCHEDULED, now=at, node_id=uuid.uuid4())
    a, _ = transition(a, AllocationState.PROVISIONING, now=at)
    a, _ = transition(a, AllocationState.RUNNING, now=at)
    return a


def test_running_starts_the_activity_clock():
    a = _running(300)
    assert a.last_active_at == T0 and a.idle_stop_after_s == 300


def test_idle_exactly_when_the_policy_has_run_out():
    a = _running(300)
    assert not is_idle(a, T0 + dt.timedelta(seconds=299))
    assert is_idle(a, T0 + dt.timedelta(seconds=300))


def test_no_policy_never_idles():
    assert not is_idle(_running(None), T0 + dt.timedelta(days=365))


def test_recent_activity_keeps_it_running():
    a = dataclasses.replace(_running(300), last_active_at=T0 + dt.timedelta(seconds=200))
    assert not is_idle(a, T0 + dt.timedelta(seconds=400))
    assert is_idle(a, T0 + dt.timedelta(seconds=500))


def test_only_running_allocations_idle():
    a = _running(60)
    releasing, _ = transition(a, AllocationState.RELEASING, now=T0, reason="user_release")
    assert not is_idle(releasing, T0 + dt.timedelta(days=1))


@given(
    policy=st.integers(60, 86_400),
    active_after=st.integers(0, 100_000),
    checked_after=st.integers(0, 200_000),
)
def test_idle_iff_silent_for_the_whole_policy(policy, active_after, checked_after):
    last = T0 + dt.timedelta(seconds=active_after)
    a = dataclasses.replace(_running(policy), last_active_at=last)
    now = T0 + dt.timedelta(seconds=checked_after)
    assert is_idle(a, now) == (now - last >= dt.timedelta(seconds=policy))


@given(
    current=st.none() | st.integers(0, 10_000),
    reported=st.integers(-10_000, 20_000),
)
def test_activity_never_goes_backwards_nor_past_our_clock(current, reported):
    now = T0 + dt.timedelta(seconds=10_000)
    cur = None if current is None else T0 + dt.timedelta(seconds=current)
    kept = later_activity(cur, T0 + dt.timedelta(seconds=reported), now)
    assert kept <= now
    if cur is not None:
        assert kept >= cur


def test_policy_bounds_name_the_limit():
    assert idle_stop_error(None) is None
    assert idle_stop_error(60) is None
    assert "60" in (idle_stop_error(59) or "")
    assert idle_stop_error(30 * 24 * 3600 + 1) is not None
