"""The controller's decisions (pure): what to request and stop, the state it moves to, and
how allocation events move a replica's record. Run again on the same state, it decides
nothing new."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from appplatform.domain.controller import (
    InstanceView,
    Observation,
    ReplicaView,
    observe,
    plan,
)
from appplatform.domain.instance_machine import State

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def replica(slot=0, state="ready", spec=1, outcome=None, reason=None, unready_since=None):
    return ReplicaView(uuid.uuid4(), slot, spec, state, outcome, reason, unready_since)


def instance(state="pending", replicas=1, spec=1, **kw) -> InstanceView:
    return InstanceView(state=state, replicas=replicas, spec_generation=spec, **kw)


def test_a_new_instance_asks_for_each_slot_once() -> None:
    decided = plan(instance(replicas=3), [], NOW)
    assert decided.requests == [0, 1, 2] and decided.stops == []
    assert decided.target is State.PROVISIONING
    # run again once the three are recorded: nothing new
    recorded = [replica(slot, "requested") for slot in range(3)]
    again = plan(instance("provisioning", replicas=3), recorded, NOW)
    assert again.requests == [] and again.stops == [] and again.target is State.PROVISIONING


def test_ready_when_every_desired_replica_is_ready_degraded_when_fewer() -> None:
    ready = [replica(0), replica(1)]
    assert plan(instance("starting", replicas=2), ready, NOW).target is State.READY
    one_unready = [replica(0), replica(1, "unready", unready_since=NOW)]
    decided = plan(instance("ready", replicas=2), one_unready, NOW)
    assert decided.target is State.DEGRADED and decided.requests == []
    assert decided.observed.ready == 1


def test_scaling_down_stops_the_highest_slots() -> None:
    replicas = [replica(0), replica(1), replica(2)]
    decided = plan(instance("ready", replicas=1), replicas, NOW)
    assert decided.stops == [(replicas[1].replica_id, "scaled_down"),
                             (replicas[2].replica_id, "scaled_down")]  # fmt: skip
    assert decided.target is State.READY


def test_a_new_spec_supersedes_the_old_replicas() -> None:
    old = replica(0, spec=1)
    decided = plan(instance("ready", spec=3), [old], NOW)
    assert decided.stops == [(old.replica_id, "superseded")]
    assert decided.requests == [0]
    assert decided.target is State.DEGRADED


def test_a_lost_replica_is_replaced_until_the_crash_loop_bound() -> None:
    lost = replica(0, "gone", outcome="failed", reason="node_lost")
    decided = plan(instance("ready", crash_count=0), [lost], NOW, crash_limit=2)
    assert decided.requests == [0] and decided.crash_count == 1
    assert decided.target is State.DEGRADED
    looped = plan(instance("degraded", crash_count=2), [lost], NOW, crash_limit=2)
    assert looped.target is State.FAILED and looped.reason == "replica_crash_loop"
    assert looped.requests == [] and looped.crash_count == 3


def test_a_replica_stopped_on_purpose_is_not_a_crash() -> None:
    stopped = replica(0, "gone", outcome="stopped")
    decided = plan(instance("ready"), [stopped], NOW)
    assert decided.requests == [0] and decided.crash_count == 0


def test_a_replica_unready_too_long_is_replaced() -> None:
    stale = replica(0, "unready", unready_since=NOW - dt.timedelta(seconds=121))
    decided = plan(instance("degraded"), [stale], NOW, unready_grace_s=120)
    assert decided.stops == [(stale.replica_id, "probe_failed")]
    assert decided.requests == [0] and decided.crash_count == 1
    fresh = replica(0, "unready", unready_since=NOW - dt.timedelta(seconds=30))
    assert plan(instance("degraded"), [fresh], NOW, unready_grace_s=120).requests == []


def test_a_rejection_of_the_current_spec_fails_the_instance() -> None:
    rejected = replica(0, "gone", outcome="rejected", reason="quota_exceeded")
    other = replica(1, "requested")
    decided = plan(instance("provisioning", replicas=2), [rejected, other], NOW)
    assert decided.target is State.FAILED
    assert decided.reason == "allocation_rejected:quota_exceeded"
    assert decided.stops == [(other.replica_id, "allocation_rejected")]
    old = replica(0, "gone", spec=1, outcome="rejected", reason="x")
    assert plan(instance("ready", spec=2), [old], NOW).target is not State.FAILED


def test_a_yanked_release_fails_and_a_suspended_tenant_stops() -> None:
    live = replica(0)
    yanked = plan(instance("ready"), [live], NOW, release_yanked=True)
    assert yanked.target is State.FAILED and yanked.reason == "release_yanked"
    suspended = plan(instance("ready"), [live], NOW, tenant_suspended=True)
    assert suspended.target is State.STOPPING
    assert suspended.stops == [(live.replica_id, "tenant_suspended")]


def test_stopping_waits_for_every_replica_to_be_gone() -> None:
    asked = instance("ready", desired_state="stopped", stop_reason="user_stop")
    live = replica(0)
    decided = plan(asked, [live], NOW)
    assert decided.target is State.STOPPING and decided.stops == [(live.replica_id, "user_stop")]
    waiting = plan(instance("stopping", desired_state="stopped"), [replica(0, "stopping")], NOW)
    assert waiting.target is State.STOPPING and waiting.stops == []
    done = plan(instance("stopping", desired_state="stopped"), [replica(0, "gone")], NOW)
    assert done.target is State.STOPPED
    never_started = plan(instance("pending", desired_state="stopped"), [], NOW)
    assert never_started.target is State.STOPPED


def test_a_terminal_instance_only_stops_what_is_left() -> None:
    leftover = replica(0, "running")
    decided = plan(instance("failed"), [leftover, replica(1, "gone")], NOW)
    assert decided.target is State.FAILED and decided.requests == []
    assert decided.stops == [(leftover.replica_id, "instance_failed")]


@pytest.mark.parametrize(
    ("current", "event", "expected"),
    [
        ("requested", "scheduled", Observation("allocated")),
        ("requested", "running", Observation("running")),
        ("running", "scheduled", None),  # stale
        ("running", "running", None),  # repeated
        ("running", "workload_ready", Observation("ready")),
        ("ready", "running", None),
        ("ready", "workload_unready", Observation("unready")),
        ("running", "workload_unready", None),  # not ready yet is not unready
        ("unready", "workload_ready", Observation("ready")),
        ("ready", "failed", Observation("gone", "failed")),
        ("ready", "releasing", Observation("gone", "lost")),
        ("requested", "rejected", Observation("gone", "rejected")),
        ("stopping", "releasing", None),
        ("stopping", "released", Observation("gone", "stopped")),
        ("stopping", "workload_ready", None),
        ("gone", "released", None),
    ],
)
def test_allocation_events_move_the_replica(current, event, expected) -> None:
    assert observe(current, f"gpuaas.allocation.{event}") == expected
