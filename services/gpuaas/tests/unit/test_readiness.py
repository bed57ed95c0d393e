"""The readiness policy of app replicas (domain/allocations.on_readiness_report): events only
on change, only for running allocations; starting is stored quietly; an unknown reason reads
as the probe's."""

import dataclasses
import datetime as dt
import uuid

from gpuaas.domain.allocations import (
    WORKLOAD_READY,
    WORKLOAD_UNREADY,
    Allocation,
    AllocationState,
    on_readiness_report,
)

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
RUNNING = Allocation(
    uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "h100-80gb", None, 1,
    AllocationState.RUNNING, NOW, NOW,
)  # fmt: skip


def _with(readiness, state=AllocationState.RUNNING):
    return dataclasses.replace(RUNNING, readiness=readiness, state=state)


def test_ready_and_unready_publish_only_when_they_change():
    assert on_readiness_report(_with(None), "ready").event == WORKLOAD_READY
    assert on_readiness_report(_with("starting"), "ready").event == WORKLOAD_READY
    assert on_readiness_report(_with("ready"), "ready") is None
    unready = on_readiness_report(_with("ready"), "unready", "process_exited")
    assert (unready.readiness, unready.reason, unready.event) == (
        "unready", "process_exited", WORKLOAD_UNREADY,
    )  # fmt: skip
    assert on_readiness_report(_with("unready"), "unready", "process_exited") is None
    # a workload that exits before it was ever ready is unready too (a crash loop shows)
    assert on_readiness_report(_with("starting"), "unready").event == WORKLOAD_UNREADY


def test_starting_is_stored_quietly_and_nothing_but_running_changes():
    starting = on_readiness_report(_with(None), "starting")
    assert (starting.readiness, starting.event) == ("starting", None)
    for state in (AllocationState.PROVISIONING, AllocationState.RELEASING):
        assert on_readiness_report(_with(None, state), "ready") is None
    assert on_readiness_report(_with(None), None) is None
    assert on_readiness_report(_with(None), "bogus") is None


def test_a_reason_the_node_invents_reads_as_the_probe_failing():
    assert on_readiness_report(_with("ready"), "unready", "rm -rf").reason == "probe_failed"
