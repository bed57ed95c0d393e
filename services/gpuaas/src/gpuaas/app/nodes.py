"""Node use cases: registration with a node credential, the sync call (observed state in,
desired state out, which is also the heartbeat), cordon/drain, and the sweeper that marks
silent nodes offline."""

import dataclasses
import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from typing import Any

from gpuaas.app.events import EVENTS
from gpuaas.app.lifecycle import Lifecycle, emit_readiness, now_utc
from gpuaas.domain.allocations import (
    DESIRED_ON_NODE,
    HOLDS_CAPACITY,
    NODE_DRAIN,
    NODE_LOST,
    RELEASABLE,
    Allocation,
    AllocationState,
    later_activity,
    on_node_report,
    on_readiness_report,
    release_steps,
)
from gpuaas.domain.catalog import SKUS
from gpuaas.domain.nodes import IllegalNodeTransition, NodeEvent, NodeState, node_transition
from gpuaas.settings import GpuaasSettings
from gpuaas.store.repository import AllocationRepository, GenerationRepository, NodeRepository
from gpucloud_contracts.events.gpuaas import NodeChanged
from platformkit.db import Database, UnitOfWork
from platformkit.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from platformkit.ids import uuid7

S = AllocationState


@dataclasses.dataclass(frozen=True)
class GpuInventory:
    index: int
    sku: str
    device_uuid: str


@dataclasses.dataclass(frozen=True)
class Registration:
    node_id: uuid.UUID
    credential: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def _node_event(
    uow: UnitOfWork,
    node: Any,
    target: NodeState,
    previous: NodeState | None,
    now: dt.datetime,
    *,
    event_type: str | None = None,
) -> None:
    gpus = await NodeRepository(uow).gpus(node["id"])
    await EVENTS.add_event(
        uow,
        event_type or node_transition(previous or NodeState.REGISTERING, target).value,
        subject=str(node["id"]),
        payload=NodeChanged(
            node_id=node["id"],
            name=node["name"],
            provider=node["provider"],
            state=target.value,
            previous_state=previous.value if previous else None,
            gpu_count=len(gpus),
            sku=gpus[0]["sku"] if gpus else None,
            # terminal-gateway's relay finds the node's PTY stream here.
            agent_url=node["agent_url"] or None,
            occurred_at=now,
        ),
    )


async def _set_state(uow: UnitOfWork, node: Any, target: NodeState, now: dt.datetime) -> None:
    current = NodeState(node["state"])
    node_transition(current, target)  # raises IllegalNodeTransition
    await NodeRepository(uow).update(node["id"], state=target.value)
    # Entering or leaving `ready` adds or removes the node's GPUs from placement.
    await GenerationRepository(uow).bump_node(node["id"])
    await _node_event(uow, node, target, current, now)


async def register_node(
    db: Database, name: str, provider: str, agent_url: str | None, gpus: list[GpuInventory]
) -> Registration:
    """Registers a node, or re-registers it (a restarted agent): a new credential each time."""
    for g in gpus:
        if g.sku not in SKUS:
            raise ValidationFailed.for_field(f"gpus[{g.index}].sku", "unknown SKU")
    if len({g.index for g in gpus}) != len(gpus):
        raise ValidationFailed.for_field("gpus", "GPU indexes must be unique")
    credential = secrets.token_urlsafe(32)
    now = now_utc()
    async with db.unit_of_work() as uow:
        nodes = NodeRepository(uow)
        node = await nodes.by_name(name, lock=True)
        if node is None:
            node_id = uuid7()
            await nodes.add(
                {
                    "id": node_id,
                    "name": name,
                    "provider": provider,
                    "state": "registering",
                    "credential_hash": _hash(credential),
                    "agent_url": agent_url,
                    "now": now,
                }
            )
        else:
            node_id = node["id"]
            if node["state"] == NodeState.RETIRED:
                raise Conflict(f"node {name} is retired")
            await nodes.update(
                node_id,
                credential_hash=_hash(credential),
                agent_url=agent_url,
                last_heartbeat_at=now,
            )
        existing = {g["index"]: g for g in await nodes.gpus(node_id)}
        for g in gpus:
            if g.index in existing and existing[g.index]["sku"] != g.sku:
                raise Conflict(f"GPU {g.index} of {name} changed model; retire the node first")
            await nodes.add_gpu(node_id, g.index, g.sku, g.device_uuid)
        await GenerationRepository(uow).bump_node(node_id)
        node = await nodes.get(node_id)
        await _node_event(
            uow, node, NodeState(node["state"]), None, now, event_type=NodeEvent.REGISTERED
        )
        if node["state"] in (NodeState.REGISTERING, NodeState.OFFLINE):
            await _set_state(uow, node, NodeState.READY, now)
        await uow.commit()
    return Registration(node_id, credential)


async def authenticate_node(db: Database, node_id: uuid.UUID, credential: str | None) -> None:
    if not credential:
        raise Unauthorized("a node credential is required")
    async with db.unit_of_work() as uow:
        node = await NodeRepository(uow).get(node_id)
    if node is None or not hmac.compare_digest(node["credential_hash"], _hash(credential)):
        raise Unauthorized("the node credential is not valid for this node")


async def _locked_node(uow: UnitOfWork, node_id: uuid.UUID) -> Any:
    node = await NodeRepository(uow).get(node_id, lock=True)
    if node is None:
        raise NotFound(f"node {node_id} not found")
    return node


async def _release_node_allocations(life: Lifecycle, node_id: uuid.UUID, reason: str) -> None:
    for a in await AllocationRepository(life.uow).lock_on_node(node_id, RELEASABLE):
        await life.apply(a, release_steps(a.state, reason))


async def sync_node(
    db: Database,
    node_id: uuid.UUID,
    observed: dict[str, str],
    settings: GpuaasSettings,
    activity: dict[str, dt.datetime] | None = None,
    failures: dict[str, str] | None = None,
    readiness: dict[str, str] | None = None,
    readiness_reasons: dict[str, str] | None = None,
) -> list[tuple[Allocation, list[Any]]]:
    """Apply the node's observed allocation states (also a heartbeat); return what the node
    should run. Observed states: provisioning, running, failed; an allocation the node no
    longer reports is torn down there. `activity` (optional; older agents omit it) is the
    last time each running workload was seen active: it feeds the idle stop. `failures`
    (optional) says why the agent refused one: a bundle that failed its re-verification
    fails with reason `bundle_<code>` instead of `provision_error`. `readiness` (optional,
    app replicas) is each running workload's probe state: a change is stored on the
    allocation and published (`workload_ready` / `workload_unready`, reason from
    `readiness_reasons`); the allocation stays running."""
    async with db.unit_of_work() as uow:
        life = Lifecycle(uow, settings)
        now = life.now
        nodes = NodeRepository(uow)
        node = await _locked_node(uow, node_id)
        await nodes.update(node_id, last_heartbeat_at=now, observed=observed)
        if node["state"] == NodeState.OFFLINE:
            await _set_state(uow, node, NodeState.READY, now)
        repo = AllocationRepository(uow)
        for a in await repo.lock_on_node(node_id, HOLDS_CAPACITY):
            key = str(a.id)
            a = await life.apply(
                a, on_node_report(a.state, observed.get(key), (failures or {}).get(key))
            )
            reported = (activity or {}).get(str(a.id))
            if a.state == S.RUNNING and reported is not None:
                kept = later_activity(a.last_active_at, reported, now)
                if kept != a.last_active_at:
                    a = dataclasses.replace(a, last_active_at=kept)
                    await repo.save(a)
            change = on_readiness_report(
                a, (readiness or {}).get(key), (readiness_reasons or {}).get(key)
            )
            if change is not None:
                a = dataclasses.replace(
                    a, readiness=change.readiness, readiness_reason=change.reason
                )
                await repo.save(a)
                if change.event is not None:
                    await emit_readiness(uow, a, change.event, change.reason, now)
        desired = await repo.lock_on_node(node_id, DESIRED_ON_NODE)
        instances = await repo.instances([a.id for a in desired])
        await uow.commit()
    return [(a, instances.get(a.id, [])) for a in desired]


async def set_node_state(
    db: Database, node_id: uuid.UUID, target: NodeState, settings: GpuaasSettings
) -> Any:
    """Operator cordon / uncordon (ready) / drain / retire. Draining releases the node's
    allocations (reason node_drain)."""
    async with db.unit_of_work() as uow:
        life = Lifecycle(uow, settings)
        node = await _locked_node(uow, node_id)
        try:
            await _set_state(uow, node, target, life.now)
        except IllegalNodeTransition as exc:
            raise Conflict(str(exc)) from None
        if target in (NodeState.DRAINING, NodeState.RETIRED):
            await _release_node_allocations(life, node_id, NODE_DRAIN)
        node = await NodeRepository(uow).get(node_id)
        await uow.commit()
    return node


async def list_nodes(db: Database) -> list[Any]:
    async with db.unit_of_work() as uow:
        return await NodeRepository(uow).all()


async def mark_silent_nodes_offline(db: Database, settings: GpuaasSettings) -> int:
    """Nodes silent for longer than the heartbeat timeout go offline; their allocations take
    the failure path (scheduled/provisioning -> failed -> releasing; running -> releasing).
    Releasing allocations stay until the node confirms the teardown or the retries run out."""
    async with db.unit_of_work() as uow:
        life = Lifecycle(uow, settings)
        stale = await NodeRepository(uow).stale(
            life.now - dt.timedelta(seconds=settings.node_heartbeat_timeout_s)
        )
        for node in stale:
            await _set_state(uow, node, NodeState.OFFLINE, life.now)
            await _release_node_allocations(life, node["id"], NODE_LOST)
        await uow.commit()
    return len(stale)


async def desired_ids(db: Database, node_id: uuid.UUID) -> set[str]:
    """The ids of what the node should run (a read-only look, no heartbeat)."""
    async with db.unit_of_work() as uow:
        return await NodeRepository(uow).desired_ids(node_id, DESIRED_ON_NODE)
