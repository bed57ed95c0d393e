"""The controller's decision, pure: given an instance's desired state and what its replicas
are observed doing, which replicas to ask gpuaas for, which to stop, and the state the
instance moves to (domain/instance_machine.py). Level-triggered: it reads the whole state
each time, never an event's delta, so running it again on the same state decides nothing
new (a requested replica is recorded before its command is sent, in one transaction).

Replicas (appplatform's record of each one it asked for):

```
requested -> allocated -> running -> ready <-> unready      (gpuaas's allocation events)
any but gone -> stopping                                     (the controller asked to stop it)
any -> gone                                                  (rejected, failed, released)
```

Each slot 0..replicas-1 holds one replica of the instance's current spec (`spec_generation`:
the generation its version, env or resources last changed). A replica of an older spec is
stopped (`superseded`) and its slot asked again; a slot above the desired count is stopped
(`scaled_down`). A replica lost without being asked to stop (its allocation failed or was
released under it) is replaced by a new replica id, at most `crash_limit` times in the
instance's life; one more loss fails the instance (`replica_crash_loop`). A replica unready
for longer than `unready_grace_s` after it was ready is replaced (`probe_failed`) too.
gpuaas refusing a replica (rejected) fails the instance (`allocation_rejected:<reason>`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from appplatform.domain.instance_machine import (
    RUNNING,
    TERMINAL,
    Observed,
    State,
    can,
    derive,
)

ACTIVE = frozenset({"requested", "allocated", "running", "ready", "unready"})
LIVE = ACTIVE | {"stopping"}
CRASH_LIMIT = 5
UNREADY_GRACE_S = 120.0


@dataclass(frozen=True)
class ReplicaView:
    replica_id: uuid.UUID
    slot: int
    spec_generation: int
    state: str
    outcome: str | None = None  # once gone: rejected | failed | lost | stopped
    reason: str | None = None
    unready_since: dt.datetime | None = None


@dataclass(frozen=True)
class InstanceView:
    state: str
    replicas: int
    spec_generation: int
    desired_state: str = "running"  # or "stopped"
    stop_reason: str | None = None
    crash_count: int = 0


@dataclass
class Plan:
    target: State
    observed: Observed
    requests: list[int] = field(default_factory=list)  # slots to ask a new replica for
    stops: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    reason: str | None = None
    crash_count: int = 0


def plan(
    instance: InstanceView,
    replicas: list[ReplicaView],
    now: dt.datetime,
    *,
    tenant_suspended: bool = False,
    release_yanked: bool = False,
    crash_limit: int = CRASH_LIMIT,
    unready_grace_s: float = UNREADY_GRACE_S,
) -> Plan:
    state = State(instance.state)
    active = [r for r in replicas if r.state in ACTIVE]
    idle = Observed(instance.replicas, 0, 0, 0)
    if state in TERMINAL:
        # a terminal instance holds nothing: anything still active is stopped
        return Plan(state, idle, stops=[(r.replica_id, f"instance_{state}") for r in active])

    stop_reason = "tenant_suspended" if tenant_suspended else None
    if instance.desired_state == "stopped":
        stop_reason = stop_reason or instance.stop_reason or "user_stop"
    if stop_reason is not None or state is State.STOPPING:
        stops = [(r.replica_id, stop_reason or "user_stop") for r in active]
        live = [r for r in replicas if r.state in LIVE]
        target = State.STOPPED if not live and can(state, State.STOPPED) else State.STOPPING
        return Plan(target, idle, stops=stops, reason=stop_reason, crash_count=instance.crash_count)

    def failed(reason: str, crashes: int = instance.crash_count) -> Plan:
        stops = [(r.replica_id, reason.split(":", 1)[0]) for r in active]
        return Plan(State.FAILED, idle, stops=stops, reason=reason, crash_count=crashes)

    if release_yanked:
        return failed("release_yanked")
    for r in replicas:
        if r.outcome == "rejected" and r.spec_generation == instance.spec_generation:
            return failed(f"allocation_rejected:{r.reason or 'unknown'}")

    result = Plan(state, idle, crash_count=instance.crash_count)
    requested = running = ready = 0
    for slot in range(instance.replicas):
        in_slot = [r for r in active if r.slot == slot]
        for r in in_slot:
            if r.spec_generation != instance.spec_generation:
                result.stops.append((r.replica_id, "superseded"))
        current = [r for r in in_slot if r.spec_generation == instance.spec_generation]
        replica = current[-1] if current else None
        for extra in current[:-1]:  # never made by this controller; kept to one
            result.stops.append((extra.replica_id, "duplicate"))
        if (
            replica is not None
            and replica.state == "unready"
            and replica.unready_since is not None
            and (now - replica.unready_since).total_seconds() > unready_grace_s
        ):
            result.stops.append((replica.replica_id, "probe_failed"))
            result.crash_count += 1
            replica = None
        elif replica is None and any(
            r.slot == slot
            and r.spec_generation == instance.spec_generation
            and r.state == "gone"
            and r.outcome in ("failed", "lost")
            for r in replicas
        ):
            result.crash_count += 1  # replacing a replica lost under it
        if replica is None:
            result.requests.append(slot)
            requested += 1
        elif replica.state in ("requested", "allocated"):
            requested += 1
        elif replica.state in ("running", "unready"):
            running += 1
        else:
            ready += 1
    for r in active:
        if r.slot >= instance.replicas:
            result.stops.append((r.replica_id, "scaled_down"))
    if result.crash_count > crash_limit:
        return failed("replica_crash_loop", result.crash_count)
    result.observed = Observed(instance.replicas, requested, running, ready)
    assert state in RUNNING
    result.target = derive(state, result.observed)
    return result


# --------------------------------------------------------------------------- observations

# gpuaas's allocation events, as what they say of the replica.
_PROGRESS = {
    "gpuaas.allocation.requested": "allocated",
    "gpuaas.allocation.scheduled": "allocated",
    "gpuaas.allocation.provisioning": "allocated",
    "gpuaas.allocation.running": "running",
    "gpuaas.allocation.workload_ready": "ready",
    "gpuaas.allocation.workload_unready": "unready",
}
_RANK = {"requested": 0, "allocated": 1, "running": 2, "ready": 3, "unready": 3}
_ENDS = {
    "gpuaas.allocation.rejected": "rejected",
    "gpuaas.allocation.failed": "failed",
    "gpuaas.allocation.releasing": "lost",
    "gpuaas.allocation.released": "lost",
    "gpuaas.allocation.release_failed": "lost",
}


@dataclass(frozen=True)
class Observation:
    state: str
    outcome: str | None = None


def observe(current: str, event_type: str) -> Observation | None:
    """The replica's state after one of its allocation's events, or None when the event
    changes nothing (a stale or repeated one: one allocation's events arrive in order, but
    a replica's record also moves on the controller's own decisions).

    A replica the controller asked to stop ends `stopped` whatever the reason gpuaas gives;
    one that ends otherwise is `lost` (released under it: idle stop, node drain, balance),
    `failed` or `rejected`."""
    if current == "gone":
        return None
    end = _ENDS.get(event_type)
    if end is not None:
        if current == "stopping":
            if event_type == "gpuaas.allocation.releasing":
                return None  # it is on its way out, as asked
            return Observation("gone", "stopped")
        return Observation("gone", end)
    progress = _PROGRESS.get(event_type)
    if progress is None or current == "stopping":
        return None
    if progress in ("ready", "unready"):
        if current == progress:
            return None
        if progress == "unready" and current in ("requested", "allocated", "running"):
            return None  # not ready yet is not unready
        return Observation(progress)
    if _RANK[progress] <= _RANK[current]:
        return None
    return Observation(progress)
