"""The fault schedule is a pure function of (seed, cycles): the same seed replays the same
faults, and `--print-schedule` prints exactly that list."""

import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from chaos.schedule import (
    CRASH_POINT,
    CRASH_POINTS,
    KILL,
    KILL_TARGETS,
    KINDS,
    counts,
    schedule,
)

seeds = st.integers(min_value=0, max_value=2**32)


@given(seeds, st.integers(min_value=0, max_value=200))
def test_same_seed_same_schedule(seed: int, cycles: int) -> None:
    assert schedule(seed, cycles) == schedule(seed, cycles)
    assert [f.cycle for f in schedule(seed, cycles)] == list(range(1, cycles + 1))


@given(seeds, st.integers(min_value=0, max_value=100), st.integers(min_value=0, max_value=100))
def test_a_longer_run_starts_with_the_shorter_one(seed: int, short: int, extra: int) -> None:
    assert schedule(seed, short + extra)[:short] == schedule(seed, short)


@given(seeds, st.integers(min_value=1, max_value=100))
def test_every_fault_is_well_formed(seed: int, cycles: int) -> None:
    faults = schedule(seed, cycles)
    for fault in faults:
        assert fault.kind in KINDS
        assert 0.5 <= fault.pause_s <= 3.0
        if fault.kind == KILL:
            assert fault.target in KILL_TARGETS and fault.point is None
        elif fault.kind == CRASH_POINT:
            assert (fault.target, fault.point) in CRASH_POINTS
        else:
            assert fault.target in ("kafka", "postgres") and fault.point is None
    assert sum(counts(faults).values()) == cycles


def test_different_seeds_differ() -> None:
    assert schedule(1, 20) != schedule(2, 20)


def test_a_long_run_injects_every_kind() -> None:
    assert all(n > 0 for n in counts(schedule(1, 100)).values())


def test_the_command_prints_the_schedule() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "chaos", "--seed", "5", "--cycles", "7", "--print-schedule"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.splitlines() == [f.describe() for f in schedule(5, 7)]
