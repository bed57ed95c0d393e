"""The instance state machine's table, its derivation from observed replicas, and the
status conditions."""

from __future__ import annotations

import datetime as dt

import pytest

from appplatform.domain.instance_machine import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    Observed,
    State,
    conditions,
    derive,
    transition,
)

S = State
ALLOWED = {(a, b) for a, nexts in TRANSITIONS.items() for b in nexts}


def test_the_table_is_the_documented_one() -> None:
    assert ALLOWED == {
        (S.PENDING, S.PROVISIONING), (S.PENDING, S.STOPPING), (S.PENDING, S.STOPPED),
        (S.PENDING, S.FAILED),
        (S.PROVISIONING, S.STARTING), (S.PROVISIONING, S.READY), (S.PROVISIONING, S.STOPPING),
        (S.PROVISIONING, S.FAILED),
        (S.STARTING, S.PROVISIONING), (S.STARTING, S.READY), (S.STARTING, S.STOPPING),
        (S.STARTING, S.FAILED),
        (S.READY, S.DEGRADED), (S.READY, S.STOPPING), (S.READY, S.FAILED),
        (S.DEGRADED, S.READY), (S.DEGRADED, S.STOPPING), (S.DEGRADED, S.FAILED),
        (S.STOPPING, S.STOPPED), (S.STOPPING, S.FAILED),
    }  # fmt: skip
    assert TERMINAL == {S.STOPPED, S.FAILED}


@pytest.mark.parametrize("pair", sorted((a, b) for a in S for b in S if (a, b) not in ALLOWED))
def test_every_other_transition_is_refused(pair) -> None:
    with pytest.raises(IllegalTransition, match=f"from {pair[0]} to {pair[1]}"):
        transition(*pair)


@pytest.mark.parametrize("pair", sorted(ALLOWED))
def test_allowed_transitions_pass(pair) -> None:
    assert transition(*pair) is pair[1]


@pytest.mark.parametrize(
    ("current", "observed", "expected"),
    [
        (S.PENDING, Observed(2, 0, 0, 0), S.PENDING),
        (S.PENDING, Observed(2, 2, 0, 0), S.PROVISIONING),
        (S.PROVISIONING, Observed(2, 1, 1, 0), S.STARTING),
        (S.STARTING, Observed(2, 0, 1, 1), S.STARTING),
        (S.STARTING, Observed(2, 0, 0, 2), S.READY),
        (S.PROVISIONING, Observed(1, 0, 0, 1), S.READY),
        (S.READY, Observed(2, 0, 1, 1), S.DEGRADED),
        (S.READY, Observed(2, 1, 0, 1), S.DEGRADED),
        (S.DEGRADED, Observed(2, 0, 0, 2), S.READY),
        (S.DEGRADED, Observed(2, 2, 0, 0), S.DEGRADED),
        (S.STARTING, Observed(1, 1, 0, 0), S.PROVISIONING),  # its one running replica lost
    ],
)
def test_the_state_follows_the_replicas(current, observed, expected) -> None:
    assert derive(current, observed) is expected


def test_a_condition_keeps_its_transition_time_until_its_status_changes() -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    t1, t2 = t0 + dt.timedelta(seconds=5), t0 + dt.timedelta(seconds=9)
    first = conditions([], S.STARTING, Observed(1, 0, 1, 0), 1, None, t0)
    assert {c["type"]: c["status"] for c in first} == {
        "Ready": "False", "Progressing": "True", "Failed": "False",
    }  # fmt: skip
    second = conditions(first, S.PROVISIONING, Observed(1, 1, 0, 0), 2, None, t1)
    ready = {c["type"]: c for c in second}
    assert ready["Ready"]["lastTransitionTime"] == t0.isoformat()  # still False
    assert ready["Ready"]["observedGeneration"] == 2
    third = {c["type"]: c for c in conditions(second, S.READY, Observed(1, 0, 0, 1), 2, None, t2)}
    assert third["Ready"]["status"] == "True"
    assert third["Ready"]["reason"] == "AllReplicasReady"
    assert third["Ready"]["lastTransitionTime"] == t2.isoformat()
    assert third["Ready"]["message"] == "1/1 replicas ready"
    failed = {
        c["type"]: c
        for c in conditions(second, S.FAILED, Observed(1, 0, 0, 0), 2, "replica_crash_loop", t2)
    }
    assert failed["Failed"]["status"] == "True"
    assert failed["Failed"]["reason"] == "replica_crash_loop"
