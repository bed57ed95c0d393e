"""Workload activity for the idle stop: CPU used by a workload's process group since the
last sample makes it active; a sleeping workload reports nothing."""

import datetime as dt
import sys
import time

from node_agent.reconcile import Reconciler, group_cpu_ticks

BUSY = f"{sys.executable} -c 'while True: pass'"
SLEEPY = f"{sys.executable} -c 'import time; time.sleep(600)'"


def _wait_for_cpu(pgid: int, above: int) -> int:
    """Until the group has used CPU beyond `above` (a busy loop gets there in ticks)."""
    for _ in range(500):
        ticks = group_cpu_ticks(pgid)
        if ticks > above:
            return ticks
        time.sleep(0.02)
    raise AssertionError("the busy workload never used CPU")


def _settled(pgid: int) -> None:
    """Until the interpreter has started and gone to sleep (its start-up uses CPU too)."""
    previous = -1
    for _ in range(100):
        ticks = group_cpu_ticks(pgid)
        if ticks == previous:
            return
        previous = ticks
        time.sleep(0.1)
    raise AssertionError("the sleeping workload never settled")


def test_a_busy_workload_is_active_and_a_sleeping_one_is_not(tmp_path, desired):
    busy = Reconciler(tmp_path / "b.json", BUSY)
    sleepy = Reconciler(tmp_path / "s.json", SLEEPY)
    try:
        busy.reconcile([desired("busy", ("GPU-x", 0, None))])
        sleepy.reconcile([desired("sleepy", ("GPU-x", 0, None))])
        _settled(sleepy.workloads["sleepy"].pid)
        t1 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        # The first sample is a baseline: nothing is reported yet.
        assert busy.activity(t1) == {} and sleepy.activity(t1) == {}
        _wait_for_cpu(busy.workloads["busy"].pid, busy.workloads["busy"].cpu_ticks or 0)
        t2 = t1 + dt.timedelta(seconds=30)
        assert busy.activity(t2) == {"busy": t2.isoformat()}
        assert sleepy.activity(t2) == {}
    finally:
        busy.reconcile([])
        sleepy.reconcile([])


def test_a_stopped_workload_keeps_its_last_activity_time(tmp_path, desired):
    r = Reconciler(tmp_path / "r.json", BUSY)
    try:
        r.reconcile([desired("a", ("GPU-x", 0, None))])
        w = r.workloads["a"]
        t1 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        r.activity(t1)
        _wait_for_cpu(w.pid, w.cpu_ticks or 0)
        t2 = t1 + dt.timedelta(seconds=5)
        assert r.activity(t2) == {"a": t2.isoformat()}
        w.stop()
        assert r.activity(t2 + dt.timedelta(seconds=60)) == {}  # dead: not reported
    finally:
        r.reconcile([])


def test_group_cpu_ticks_parses_names_with_spaces_and_parentheses(tmp_path):
    proc = tmp_path / "proc"
    for pid, name, pgrp, utime, stime in [
        (10, "a b) c", 10, 5, 2),
        (11, "x", 10, 1, 1),
        (12, "y", 99, 7, 7),
    ]:
        (proc / str(pid)).mkdir(parents=True)
        rest = ["S", "1", str(pgrp)] + ["0"] * 8 + [str(utime), str(stime)] + ["0"] * 10
        (proc / str(pid) / "stat").write_text(f"{pid} ({name}) " + " ".join(rest))
    (proc / "self").mkdir()
    assert group_cpu_ticks(10, proc) == 9
