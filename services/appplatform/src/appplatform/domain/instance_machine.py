"""The app instance state machine, the one place it is written (docs/state-machines.md shows
the same table). Pure: states and allowed transitions are data; `transition` refuses what
the table does not allow; `derive` says which state the observed replicas put an instance
in; `conditions` computes the status conditions (Kubernetes style: type, status, reason,
message, observedGeneration, lastTransitionTime).

```
pending -> provisioning -> starting -> ready -> degraded -> ready ...
pending | provisioning | starting | ready | degraded -> stopping -> stopped
any live state -> failed        (rejected, yanked, crash loop)
starting -> provisioning        (its only running replica was lost and is being replaced)
provisioning -> ready           (every replica became ready between two reconciles)
pending -> stopped              (stopped before anything was asked of gpuaas)
```
stopped and failed are terminal.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class State(enum.StrEnum):
    PENDING = "pending"
    PROVISIONING = "provisioning"
    STARTING = "starting"
    READY = "ready"
    DEGRADED = "degraded"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


S = State
TRANSITIONS: Mapping[State, frozenset[State]] = {
    S.PENDING: frozenset({S.PROVISIONING, S.STOPPING, S.STOPPED, S.FAILED}),
    S.PROVISIONING: frozenset({S.STARTING, S.READY, S.STOPPING, S.FAILED}),
    S.STARTING: frozenset({S.PROVISIONING, S.READY, S.STOPPING, S.FAILED}),
    S.READY: frozenset({S.DEGRADED, S.STOPPING, S.FAILED}),
    S.DEGRADED: frozenset({S.READY, S.STOPPING, S.FAILED}),
    S.STOPPING: frozenset({S.STOPPED, S.FAILED}),
    S.STOPPED: frozenset(),
    S.FAILED: frozenset(),
}
TERMINAL = frozenset(s for s, nexts in TRANSITIONS.items() if not nexts)
# States in which the instance still asks for replicas.
RUNNING = frozenset({S.PENDING, S.PROVISIONING, S.STARTING, S.READY, S.DEGRADED})


class IllegalTransition(ValueError):
    def __init__(self, current: State, target: State) -> None:
        self.current, self.target = current, target
        super().__init__(f"an instance cannot go from {current} to {target}")


def can(current: State | str, target: State | str) -> bool:
    return State(target) in TRANSITIONS[State(current)]


def transition(current: State | str, target: State | str) -> State:
    """`target`, when the table allows it from `current` (raises IllegalTransition)."""
    current, target = State(current), State(target)
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current, target)
    return target


@dataclass(frozen=True)
class Observed:
    """What the current replicas of an instance are doing (those of its desired spec, in
    the desired slots)."""

    desired: int
    requested: int  # asked of gpuaas, no allocation running yet
    running: int  # allocation running, probe not passed (or failing)
    ready: int  # probe passing


def derive(current: State | str, observed: Observed) -> State:
    """The state a running instance is in given what its replicas do (stopping, stopped and
    failed are the controller's decisions, not derived)."""
    current = State(current)
    if observed.ready >= observed.desired:
        return S.READY
    if current in (S.READY, S.DEGRADED):
        return S.DEGRADED
    if observed.running or observed.ready:
        return S.STARTING
    if observed.requested:
        return S.PROVISIONING
    return S.PENDING if current is S.PENDING else current


def _condition(
    previous: Mapping[str, Any] | None,
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int,
    now: dt.datetime,
) -> dict[str, Any]:
    text = "True" if status else "False"
    changed = previous is None or previous.get("status") != text
    return {
        "type": type_,
        "status": text,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": now.isoformat()
        if changed
        else previous.get("lastTransitionTime", now.isoformat()),  # type: ignore[union-attr]
    }


def conditions(
    previous: list[dict[str, Any]],
    state: State | str,
    observed: Observed,
    generation: int,
    reason: str | None,
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """Ready, Progressing and Failed; a condition's lastTransitionTime moves only when its
    status changes."""
    state = State(state)
    old = {c["type"]: c for c in previous}
    ready = state is S.READY
    progressing = state in (S.PENDING, S.PROVISIONING, S.STARTING, S.DEGRADED, S.STOPPING)
    failed = state is S.FAILED
    counts = f"{observed.ready}/{observed.desired} replicas ready"
    return [
        _condition(
            old.get("Ready"),
            "Ready",
            ready,
            "AllReplicasReady"
            if ready
            else ("Stopped" if state in TERMINAL else "ReplicasNotReady"),
            counts,
            generation,
            now,
        ),
        _condition(
            old.get("Progressing"),
            "Progressing",
            progressing,
            state.value.capitalize(),
            f"{state.value}: {counts}",
            generation,
            now,
        ),
        _condition(
            old.get("Failed"),
            "Failed",
            failed,
            (reason or "Failed") if failed else "NoFailure",
            reason or "",
            generation,
            now,
        ),
    ]
