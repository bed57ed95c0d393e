"""The allocation lifecycle (architecture.md §4), enforced here and nowhere else.

    requested -> scheduled -> provisioning -> running -> releasing -> released
    requested -> rejected                          (no capacity, quota, balance gate)
    scheduled | provisioning -> failed -> releasing   (node lost, provision error)
    running -> releasing             (user release, balance exhausted, idle stop, node drain)

Idle stop (`is_idle`): a running allocation created with `idle_stop_after_s` whose last
reported activity is at least that old is released with reason `idle_stop`.
    releasing -> releasing (retry, backoff) -> released | release_failed (operator)

Two edges are added and written in docs/gpuaas.md: `scheduled | provisioning -> releasing`
(the user cancels before the workload runs) and `release_failed -> releasing` (an operator
retries). Every transition returns the event to emit; an illegal one raises
IllegalTransition.

The policy (which transitions a fact calls for) is here too, as pure functions returning
the `Step`s to take, which the app layer only applies (app/lifecycle.py):

- `on_node_report(state, seen)`: what the node's observed state of the allocation means;
- `release_steps(state, reason)`: the way to releasing (through failed when the node was
  lost before the workload ran): user release, node lost or drained, balance exhausted,
  idle stop;
- `on_release_retry_due(allocation)`: retry the release, or give up (release_failed);
- `on_idle_check(allocation, now)`: the idle stop.
"""

import dataclasses
import datetime as dt
import enum
import uuid
from typing import Any


class AllocationState(enum.StrEnum):
    REQUESTED = "requested"
    REJECTED = "rejected"
    SCHEDULED = "scheduled"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    FAILED = "failed"
    RELEASING = "releasing"
    RELEASED = "released"
    RELEASE_FAILED = "release_failed"


S = AllocationState
TRANSITIONS: dict[AllocationState, frozenset[AllocationState]] = {
    S.REQUESTED: frozenset({S.SCHEDULED, S.REJECTED}),
    S.SCHEDULED: frozenset({S.PROVISIONING, S.FAILED, S.RELEASING}),
    S.PROVISIONING: frozenset({S.RUNNING, S.FAILED, S.RELEASING}),
    S.RUNNING: frozenset({S.RELEASING}),
    S.FAILED: frozenset({S.RELEASING}),
    S.RELEASING: frozenset({S.RELEASING, S.RELEASED, S.RELEASE_FAILED}),
    S.RELEASE_FAILED: frozenset({S.RELEASING}),
    S.REJECTED: frozenset(),
    S.RELEASED: frozenset(),
}
# States whose GPUs/slices are still booked.
HOLDS_CAPACITY = frozenset(
    {S.SCHEDULED, S.PROVISIONING, S.RUNNING, S.FAILED, S.RELEASING, S.RELEASE_FAILED}
)
RELEASABLE = frozenset({S.SCHEDULED, S.PROVISIONING, S.RUNNING, S.FAILED})
# What a node should be running (its desired state).
DESIRED_ON_NODE = frozenset({S.SCHEDULED, S.PROVISIONING, S.RUNNING})
MAX_RELEASE_ATTEMPTS = 6


class AllocationEvent(enum.StrEnum):
    """CloudEvents type per state entered."""

    REQUESTED = "gpuaas.allocation.requested"
    REJECTED = "gpuaas.allocation.rejected"
    SCHEDULED = "gpuaas.allocation.scheduled"
    PROVISIONING = "gpuaas.allocation.provisioning"
    RUNNING = "gpuaas.allocation.running"
    FAILED = "gpuaas.allocation.failed"
    RELEASING = "gpuaas.allocation.releasing"
    RELEASED = "gpuaas.allocation.released"
    RELEASE_FAILED = "gpuaas.allocation.release_failed"


class IllegalTransition(Exception):
    def __init__(self, allocation_id: uuid.UUID, current: AllocationState, target: AllocationState):
        super().__init__(f"allocation {allocation_id} cannot go from {current} to {target}")
        self.current, self.target = current, target


@dataclasses.dataclass(frozen=True, slots=True)
class LaunchedBundle:
    """The registry release an allocation runs (it passed the launch gate): the app's
    namespace (a tenant, or the platform-public one), app, version, bundle digest, and the
    channel the project required."""

    tenant_id: uuid.UUID
    app: str
    version: str
    digest: str
    channel: str


@dataclasses.dataclass(frozen=True, slots=True)
class ReplicaRef:
    """The app replica an allocation runs: appplatform's replica id (the allocation's
    idempotency key for the replica command) and its instance."""

    replica_id: uuid.UUID
    instance_id: uuid.UUID


@dataclasses.dataclass(frozen=True, slots=True)
class Allocation:
    id: uuid.UUID
    tenant_id: uuid.UUID
    project_id: uuid.UUID
    sku: str
    mig_profile: str | None
    count: int
    state: AllocationState
    created_at: dt.datetime
    updated_at: dt.datetime
    node_id: uuid.UUID | None = None
    reason: str | None = None
    running_since: dt.datetime | None = None
    # Metering cursor: the end of the last closed usage interval and the next sequence.
    usage_cursor: dt.datetime | None = None
    usage_sequence: int = 0
    release_attempts: int = 0
    next_release_at: dt.datetime | None = None
    # Idle stop: release a running allocation after this many seconds without activity
    # (None: never). last_active_at starts at running and moves with the node's reports.
    idle_stop_after_s: int | None = None
    last_active_at: dt.datetime | None = None
    # The signed, promoted bundle it runs (None: the node's configured workload).
    bundle: LaunchedBundle | None = None
    # The app replica it runs (appplatform's controller asked for it), and how the node
    # agent runs the bundle (the replica command's runtime: command, env, ports, probe).
    replica: ReplicaRef | None = None
    runtime: dict[str, Any] | None = None
    # The workload's readiness as the node last reported it (app replicas only; not a
    # state: the allocation stays running): starting | ready | unready, and why unready.
    readiness: str | None = None
    readiness_reason: str | None = None

    @property
    def holds_capacity(self) -> bool:
        return self.state in HOLDS_CAPACITY


@dataclasses.dataclass(frozen=True, slots=True)
class Transition:
    """What happened: the event to emit for one state change."""

    type: AllocationEvent
    allocation: Allocation
    previous: AllocationState | None
    reason: str | None
    attempt: int | None = None


def new_allocation(
    allocation_id: uuid.UUID,
    tenant_id: uuid.UUID,
    project_id: uuid.UUID,
    sku: str,
    mig_profile: str | None,
    count: int,
    now: dt.datetime,
    idle_stop_after_s: int | None = None,
    bundle: LaunchedBundle | None = None,
    replica: ReplicaRef | None = None,
    runtime: dict[str, Any] | None = None,
) -> tuple[Allocation, Transition]:
    allocation = Allocation(
        allocation_id,
        tenant_id,
        project_id,
        sku,
        mig_profile,
        count,
        S.REQUESTED,
        now,
        now,
        idle_stop_after_s=idle_stop_after_s,
        bundle=bundle,
        replica=replica,
        runtime=runtime,
    )
    return allocation, Transition(AllocationEvent.REQUESTED, allocation, None, None)


MIN_IDLE_STOP_S = 60
MAX_IDLE_STOP_S = 30 * 24 * 3600
IDLE_STOP_REASON = "idle_stop"


def idle_stop_error(idle_stop_after_s: int | None) -> str | None:
    """Why an idle policy is not acceptable, or None. Below a minute a slow agent report
    would look like idleness; above 30 days the policy means nothing."""
    if idle_stop_after_s is None:
        return None
    if not MIN_IDLE_STOP_S <= idle_stop_after_s <= MAX_IDLE_STOP_S:
        return f"must be {MIN_IDLE_STOP_S} to {MAX_IDLE_STOP_S} seconds, or absent"
    return None


def is_idle(allocation: Allocation, now: dt.datetime) -> bool:
    """A running allocation with an idle policy whose last activity is at least the policy
    old: the sweeper releases it (reason idle_stop)."""
    if allocation.state != S.RUNNING or allocation.idle_stop_after_s is None:
        return False
    since = allocation.last_active_at or allocation.running_since
    if since is None:
        return False
    return now - since >= dt.timedelta(seconds=allocation.idle_stop_after_s)


def later_activity(
    current: dt.datetime | None, reported: dt.datetime, now: dt.datetime
) -> dt.datetime:
    """The activity time to keep: never backwards, never past our own clock (a node whose
    clock runs ahead must not keep its allocations alive forever)."""
    reported = min(reported, now)
    return reported if current is None or reported > current else current


def release_backoff(attempt: int) -> dt.timedelta:
    """1 s, 2 s, 4 s ... capped at 60 s between release retries."""
    return dt.timedelta(seconds=min(2 ** max(attempt - 1, 0), 60))


def transition(
    allocation: Allocation,
    target: AllocationState,
    *,
    now: dt.datetime,
    reason: str | None = None,
    node_id: uuid.UUID | None = None,
) -> tuple[Allocation, Transition]:
    """The one place an allocation changes state."""
    if target not in TRANSITIONS[allocation.state]:
        raise IllegalTransition(allocation.id, allocation.state, target)
    changes: dict[str, object] = {"state": target, "updated_at": now}
    if reason is not None:
        changes["reason"] = reason
    if target == S.SCHEDULED:
        if node_id is None:
            raise ValueError("scheduling needs a node")
        changes["node_id"] = node_id
    if target == S.RUNNING:
        changes["running_since"] = now
        changes["usage_cursor"] = now
        changes["last_active_at"] = now
    attempt = None
    if target == S.RELEASING:
        attempt = allocation.release_attempts + 1 if allocation.state == S.RELEASING else 1
        changes["release_attempts"] = attempt
        changes["next_release_at"] = now + release_backoff(attempt)
    if target in (S.RELEASED, S.RELEASE_FAILED):
        changes["next_release_at"] = None
    updated = dataclasses.replace(allocation, **changes)  # type: ignore[arg-type]
    event = AllocationEvent[target.name]
    return updated, Transition(event, updated, allocation.state, reason, attempt)


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """One transition the policy calls for."""

    target: AllocationState
    reason: str | None = None


NODE_LOST = "node_lost"
NODE_DRAIN = "node_drain"
USER_RELEASE = "user_release"
BALANCE_EXHAUSTED = "balance_exhausted"
WORKLOAD_LOST = "workload_lost"
PROVISION_ERROR = "provision_error"


def release_steps(state: AllocationState, reason: str) -> tuple[Step, ...]:
    """Send a live allocation to releasing (through failed when its node was lost before
    the workload ran); nothing when it is releasing already or its release failed."""
    if state in (S.RELEASING, S.RELEASE_FAILED):
        return ()
    if reason == NODE_LOST and state in (S.SCHEDULED, S.PROVISIONING):
        return (Step(S.FAILED, reason), Step(S.RELEASING, reason))
    return (Step(S.RELEASING, reason),)


# Why a node agent refused to run an allocation's bundle (gpucloud_trust's reason codes:
# its re-verification before running). Any other failure is a provision error: a node never
# chooses the reason text gpuaas records.
BUNDLE_FAILURES = frozenset(
    {
        "unknown-release", "manifest-digest", "manifest-invalid", "yanked", "unsigned",
        "untrusted", "revoked", "expired", "below-threshold", "unpromoted", "statement",
        "subject-mismatch", "blob-missing", "blob-size", "blob-digest",
        # the node's unpacking refused a layer member (absolute, `..`, a link outside, ...)
        "layer-unsafe",
    }
)  # fmt: skip


def failure_reason(code: str | None) -> str:
    """The reason recorded when a node reports an allocation failed (with this code)."""
    if code in BUNDLE_FAILURES:
        return "bundle_" + code.replace("-", "_")
    return PROVISION_ERROR


def on_node_report(
    state: AllocationState, seen: str | None, failure: str | None = None
) -> tuple[Step, ...]:
    """The steps the node's report calls for. `seen`: provisioning, running, failed, or
    None when the node no longer reports the allocation (its workload is gone). `failure`:
    the agent's reason code for a failed one (a bundle that failed its re-verification)."""
    steps: list[Step] = []

    def go(*more: Step) -> AllocationState:
        steps.extend(more)
        return more[-1].target if more else state

    if state == S.SCHEDULED and seen in ("provisioning", "running"):
        state = go(Step(S.PROVISIONING))
    if state == S.PROVISIONING and seen == "running":
        state = go(Step(S.RUNNING))
    elif state in (S.SCHEDULED, S.PROVISIONING) and seen == "failed":
        why = failure_reason(failure)
        state = go(Step(S.FAILED, why), Step(S.RELEASING, why))
    elif state == S.RUNNING and seen in (None, "failed"):
        # The workload vanished under a running allocation: release it.
        state = go(*release_steps(state, WORKLOAD_LOST))
    if state == S.RELEASE_FAILED and seen is None:
        state = go(Step(S.RELEASING, "retry"))
    if state == S.RELEASING and seen is None:
        state = go(Step(S.RELEASED))
    return tuple(steps)


def on_release_retry_due(allocation: Allocation) -> Step:
    """A release whose retry is due: try again, or give up after MAX_RELEASE_ATTEMPTS."""
    if allocation.release_attempts >= MAX_RELEASE_ATTEMPTS:
        return Step(S.RELEASE_FAILED, "release_retries_exhausted")
    return Step(S.RELEASING, "retry")


def on_idle_check(allocation: Allocation, now: dt.datetime) -> tuple[Step, ...]:
    """The idle stop: release a running allocation idle for its whole policy."""
    if not is_idle(allocation, now):
        return ()
    return release_steps(allocation.state, IDLE_STOP_REASON)


# ------------------------------------------------------------------- workload readiness
# Not a state: a running app replica's workload passes its probe or not, as its node
# reports; gpuaas records the change and publishes it (only on change).
WORKLOAD_READY = "gpuaas.allocation.workload_ready"
WORKLOAD_UNREADY = "gpuaas.allocation.workload_unready"
READINESS = frozenset({"starting", "ready", "unready"})
# Why a workload turned unready (what the agent may say; anything else reads as the probe).
UNREADY_REASONS = frozenset({"probe_failed", "process_exited"})
PROBE_FAILED = "probe_failed"


@dataclasses.dataclass(frozen=True, slots=True)
class ReadinessChange:
    """A readiness report that changes the stored readiness: the new values, and the event
    to publish (None for `starting`, which is only stored)."""

    readiness: str
    reason: str | None
    event: str | None


def on_readiness_report(
    allocation: Allocation, reported: str | None, reason: str | None = None
) -> ReadinessChange | None:
    """What a node's readiness report of a running allocation changes, or None. Ready
    publishes `workload_ready` when it was not ready; unready publishes `workload_unready`
    when it was not unready already (a workload that exits before its first ready counts
    too: a crash loop shows); `starting` is stored quietly."""
    if allocation.state != S.RUNNING or reported not in READINESS:
        return None
    if reported == allocation.readiness:
        return None
    if reported == "ready":
        return ReadinessChange("ready", None, WORKLOAD_READY)
    if reported == "unready":
        why = reason if reason in UNREADY_REASONS else PROBE_FAILED
        return ReadinessChange("unready", why, WORKLOAD_UNREADY)
    return ReadinessChange("starting", None, None)
