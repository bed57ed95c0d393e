"""appplatform's replica commands (appplatform.replica.v1, inbox consumer `replicas`).

- `appplatform.replica.requested`: an allocation in the instance's project, made by the
  same use case as `POST .../allocations` (app/allocations.py `_create_in`: quota, balance,
  runway, the launch gate with the bundle and the project's required channel, placement),
  after the checks `projects.authorize` makes for a route (the project is gpuaas's for that
  tenant, the tenant is not suspended). Once per `replica_id` (a unique column): a command
  sent or delivered again finds its allocation and does nothing. The allocation keeps the
  replica and the runtime; a refusal is a rejected allocation (`gpuaas.allocation.rejected`
  naming the replica, with the reason), never an error of the consumer.
- `appplatform.replica.stop_requested`: release the replica's allocation; nothing when it
  is unknown, of another tenant or project, or already releasing or gone.

The kit refuses records whose CloudEvents source may not publish on the topic
(envelope.verify_source against deploy/fleet.toml: only appplatform) before this runs.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid

import msgspec

from gpuaas.app.allocations import CreateAllocation, _create_in, validate
from gpuaas.app.capacity import LiveIndex
from gpuaas.app.errors import TenantSuspendedProblem
from gpuaas.app.lifecycle import Lifecycle, emit
from gpuaas.domain.allocations import (
    RELEASABLE,
    Allocation,
    AllocationEvent,
    AllocationState,
    ReplicaRef,
    Transition,
    new_allocation,
    release_steps,
)
from gpuaas.domain.launch_gate import PLATFORM, BundleRequest
from gpuaas.domain.placement import Decision
from gpuaas.settings import GpuaasSettings
from gpuaas.store.repository import AllocationRepository, ProjectRepository
from gpucloud_contracts.events.appplatform import ReplicaRequest, ReplicaStop
from platformkit.consumers import Handler
from platformkit.db import UnitOfWork
from platformkit.envelope import CloudEvent
from platformkit.errors import NotFound, ProblemError, ValidationFailed

log = logging.getLogger(__name__)

REQUESTED = "appplatform.replica.requested"
STOP_REQUESTED = "appplatform.replica.stop_requested"
UNKNOWN_PROJECT = "unknown_project"
TENANT_SUSPENDED = "tenant_suspended"
INVALID_RESOURCES = "invalid_resources"
# The id of the rejected allocation of a replica whose resources no SKU matches (nothing
# can be recorded for it): derived from the replica id, so a repeat names the same one.
_REJECTED_NS = uuid.UUID("6f1d8a52-3c2b-4f0e-9a57-1f3a9e0c2b7d")


def unrecorded_id(replica_id: uuid.UUID) -> uuid.UUID:
    """The allocation id of a replica refused before any row could hold it."""
    return uuid.uuid5(_REJECTED_NS, str(replica_id))


def replica_command(r: ReplicaRequest) -> CreateAllocation:
    """The replica command as the allocation request the route would make. A bundle of the
    instance's own tenant is an app of this project's tenant; the platform-public namespace
    is `platform`; any other namespace cannot be launched from here (`unknown-release`)."""
    b = r.bundle
    return CreateAllocation(
        tenant_id=r.tenant_id,
        project_id=r.project_id,
        sku=r.resources.sku,
        mig_profile=r.resources.mig_profile,
        count=r.resources.count,
        idle_stop_after_s=r.idle_stop_after_s,
        bundle=BundleRequest(
            app=b.app,
            version=b.version,
            digest=b.manifest_digest,
            platform=b.tenant_id == PLATFORM,
        ),
        replica=ReplicaRef(r.replica_id, r.instance_id),
        runtime=msgspec.to_builtins(r.runtime),
    )


def _foreign_namespace(r: ReplicaRequest) -> bool:
    return r.bundle.tenant_id not in (r.tenant_id, PLATFORM)


async def request_replica(
    uow: UnitOfWork, r: ReplicaRequest, settings: GpuaasSettings, indexes: dict[str, LiveIndex]
) -> Allocation | None:
    """The replica's allocation (made now, or the one made before), or None when its
    resources name no SKU or profile (then only the rejected event is published)."""
    repo = AllocationRepository(uow)
    existing = await repo.by_replica(r.replica_id)
    if existing is not None:
        return existing
    command = replica_command(r)
    try:
        profile = validate(command)
    except ValidationFailed as exc:
        await _reject_unrecorded(uow, r, settings, str(exc))
        return None
    live = indexes.setdefault(command.sku, LiveIndex(command.sku))
    refused: tuple[ProblemError, str] | None = None
    scope = await ProjectRepository(uow).scope(r.tenant_id, r.project_id)
    if scope is None:
        refused = NotFound(f"project {r.project_id} not found in this tenant"), UNKNOWN_PROJECT
    elif scope["tenant_status"] == "suspended":
        refused = TenantSuspendedProblem(f"tenant {r.tenant_id} is suspended"), TENANT_SUSPENDED
    elif _foreign_namespace(r):
        refused = NotFound("no such release for this project"), "bundle_unknown_release"
    booked: list[Decision] = []
    outcome, _ = await _create_in(uow, command, profile, settings, live, booked, refused)
    # The consumer's transaction may still roll back (its inbox row is claimed with it):
    # the booked node is read again on the next placement either way, so a rolled-back
    # booking never stays in the index.
    live.mark_dirty([d.node_id for d in booked])
    a = outcome.view.allocation
    log.info(
        "replica allocation",
        extra={"fields": {"replica_id": str(r.replica_id), "allocation_id": str(a.id),
                          "state": a.state.value, "reason": a.reason}},
    )  # fmt: skip
    return a


async def _reject_unrecorded(
    uow: UnitOfWork, r: ReplicaRequest, settings: GpuaasSettings, why: str
) -> None:
    """Resources no SKU or profile matches: no row can hold them (the SKU is a reference),
    so only `requested` and `rejected` are published, under an id derived from the replica."""
    life = Lifecycle(uow, settings)
    a, first = new_allocation(
        unrecorded_id(r.replica_id),
        r.tenant_id,
        r.project_id,
        r.resources.sku,
        r.resources.mig_profile,
        r.resources.count,
        life.now,
        replica=ReplicaRef(r.replica_id, r.instance_id),
    )
    await emit(uow, first)
    rejected = dataclasses.replace(a, state=AllocationState.REJECTED, reason=INVALID_RESOURCES)
    refusal = Transition(
        AllocationEvent.REJECTED, rejected, AllocationState.REQUESTED, INVALID_RESOURCES
    )
    await emit(uow, refusal)
    log.warning("replica refused: %s", why, extra={"fields": {"replica_id": str(r.replica_id)}})


async def stop_replica(uow: UnitOfWork, s: ReplicaStop, settings: GpuaasSettings) -> None:
    """Release the replica's allocation; a no-op when there is none (never made, rejected,
    of another tenant or project) or it is releasing or gone."""
    a = await AllocationRepository(uow).by_replica(s.replica_id, lock=True)
    if a is None or (a.tenant_id, a.project_id) != (s.tenant_id, s.project_id):
        return
    if a.state not in RELEASABLE:
        return
    await Lifecycle(uow, settings).apply(a, release_steps(a.state, s.reason))


def replica_handler(settings: GpuaasSettings) -> Handler:
    # This consumer's own placement indexes (per SKU): the database stays the arbiter, so
    # an index beside the routes' in the same process only costs its first build.
    indexes: dict[str, LiveIndex] = {}

    async def apply_replica_event(event: CloudEvent, uow: UnitOfWork) -> None:
        if event.type == REQUESTED:
            r = msgspec.json.decode(event.data, type=ReplicaRequest)
            await request_replica(uow, r, settings, indexes)
        elif event.type == STOP_REQUESTED:
            await stop_replica(uow, msgspec.json.decode(event.data, type=ReplicaStop), settings)

    return apply_replica_event
