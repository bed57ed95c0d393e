"""Allocation use cases. Each opens one unit of work: the allocation, its booked slices,
its outbox events and the idempotency record commit together or not at all."""

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from gpuaas.app import launch_gate
from gpuaas.app.capacity import LiveIndex, live_index
from gpuaas.app.errors import (
    IllegalState,
    LaunchRefusedProblem,
    NoCapacity,
    QuotaExceededProblem,
)
from gpuaas.app.lifecycle import Lifecycle, emit
from gpuaas.app.prices import money_gate
from gpuaas.domain.allocations import (
    RELEASABLE,
    USER_RELEASE,
    Allocation,
    AllocationState,
    IllegalTransition,
    ReplicaRef,
    idle_stop_error,
    new_allocation,
    release_steps,
)
from gpuaas.domain.catalog import SKUS, MigProfile
from gpuaas.domain.launch_gate import BundleRequest
from gpuaas.domain.placement import Decision
from gpuaas.domain.quota import QuotaExceeded, check_quota, units
from gpuaas.settings import GpuaasSettings
from gpuaas.store.repository import (
    AllocationRepository,
    GenerationRepository,
    QuotaRepository,
    SliceTaken,
)
from platformkit.db import Database, UnitOfWork
from platformkit.errors import NotFound, ProblemError, ValidationFailed
from platformkit.idempotency import IdempotentRequest, StoredResponse, run_once
from platformkit.ids import uuid7

MAX_GPUS_PER_NODE = 8
# A lost race for the same slices re-reads the committed state and places again.
SCHEDULING_ATTEMPTS = 8


@dataclasses.dataclass(frozen=True)
class CreateAllocation:
    tenant_id: uuid.UUID
    project_id: uuid.UUID
    sku: str
    mig_profile: str | None
    count: int
    idempotency_key: str | None = None
    idle_stop_after_s: int | None = None
    # The signed, promoted bundle to run (the launch gate checks it); None: the node's
    # configured workload.
    bundle: BundleRequest | None = None
    # An app replica (appplatform's replica command, app/replicas.py): its ids and the
    # runtime the node agent runs the bundle with. The replica id is the idempotency key.
    replica: ReplicaRef | None = None
    runtime: dict[str, Any] | None = None

    @property
    def idempotency(self) -> IdempotentRequest | None:
        fingerprint: list[object] = [str(self.project_id), self.sku, self.mig_profile]
        fingerprint.append(self.count)
        if self.idle_stop_after_s is not None:
            # Only when set: keys stored before the idle policy existed keep their hash.
            fingerprint.append(self.idle_stop_after_s)
        if self.bundle is not None:
            b = self.bundle
            fingerprint.append([b.app, b.version, b.digest, b.platform])
        return IdempotentRequest.of(
            f"gpuaas.allocations:{self.project_id}", self.idempotency_key, fingerprint
        )


@dataclasses.dataclass(frozen=True)
class AllocationView:
    allocation: Allocation
    instances: list[Any]
    # the launch gate's reason to refuse the allocation's release now (registry yanked it or
    # revoked a signer key after the launch: new launches are refused, what runs keeps
    # running until released, and the API reports it); None: it would still pass
    refusal: str | None = None

    @property
    def yanked(self) -> bool:
        return self.refusal == "yanked"


@dataclasses.dataclass(frozen=True)
class AllocationOutcome:
    """What a request came to: the allocation, scheduled, or recorded as rejected with the
    reason (answered as a problem, and replayed as one for its Idempotency-Key)."""

    view: AllocationView
    rejection: ProblemError | None = None


def validate(command: CreateAllocation) -> MigProfile | None:
    sku = SKUS.get(command.sku)
    if sku is None:
        raise ValidationFailed.for_field("sku", f"unknown SKU; one of {', '.join(SKUS)}")
    profile = None
    if command.mig_profile is not None:
        profile = sku.profile(command.mig_profile)
        if profile is None:
            names = ", ".join(p.name for p in sku.profiles)
            raise ValidationFailed.for_field(
                "mig_profile", f"not a MIG profile of {sku.key}; one of {names}"
            )
    most = MAX_GPUS_PER_NODE * (profile.shape.max_per_gpu if profile else 1)
    if not 1 <= command.count <= most:
        raise ValidationFailed.for_field(
            "count", f"must be 1 to {most} on one node for this request"
        )
    if problem := idle_stop_error(command.idle_stop_after_s):
        raise ValidationFailed.for_field("idle_stop_after_s", problem)
    return profile


async def _schedule(
    uow: UnitOfWork, live: LiveIndex, a: Allocation, profile: MigProfile | None
) -> Decision | None:
    """Place on the live index and book; the database's (gpu, slice) key is the arbiter. A
    lost race reloads the node it happened on and places again."""
    repo = AllocationRepository(uow)
    for _ in range(SCHEDULING_ATTEMPTS):
        index = await live.current(uow)
        decision = index.place(profile.shape if profile else None, a.count)
        if decision is None:
            return None
        try:
            await repo.book(a.id, list(decision.bookings))
        except SliceTaken:
            live.mark_dirty([decision.node_id])
            continue
        # Applied before commit so that concurrent requests in this process pick other
        # slots; if this transaction rolls back, the caller marks the node dirty.
        index.book(decision)
        return decision
    return None


async def create_allocation(
    db: Database,
    command: CreateAllocation,
    settings: GpuaasSettings,
    encode: Callable[[AllocationOutcome], StoredResponse],
) -> StoredResponse:
    """One request, once per Idempotency-Key. A rejection (no capacity, quota, balance) is
    recorded as a rejected allocation with its events, and encoded as the API answers it."""
    profile = validate(command)
    live = live_index(db, command.sku)
    booked: list[Decision] = []
    committed: list[bool] = []

    async def work(uow: UnitOfWork) -> AllocationOutcome:
        outcome, generation = await _create_in(uow, command, profile, settings, live, booked)

        def on_commit() -> None:
            committed.append(True)
            if booked:
                live.committed(generation)

        uow.after_commit(on_commit)
        return outcome

    try:
        return await run_once(db, command.idempotency, work, encode)
    finally:
        if booked and not committed:
            live.mark_dirty([d.node_id for d in booked])


async def _rejection(
    uow: UnitOfWork,
    command: CreateAllocation,
    a: Allocation,
    requested: int,
    settings: GpuaasSettings,
    now: dt.datetime,
) -> tuple[ProblemError, str] | None:
    """Why the request is refused before placement (the money gate: balance, price, runway;
    then quota), or None."""
    limit = await QuotaRepository(uow).lock(
        command.tenant_id, command.project_id, settings.default_project_quota
    )
    if refused := await money_gate(
        uow,
        command.tenant_id,
        SKUS[command.sku].price_key(command.mig_profile),
        command.count,
        settings.min_runway_s,
        now,
        f"allocation {a.id} rejected",
    ):
        return refused
    try:
        check_quota(
            limit,
            await AllocationRepository(uow).units_in_use(command.tenant_id, command.project_id),
            requested,
        )
    except QuotaExceeded as exc:
        return QuotaExceededProblem(f"allocation {a.id} rejected: {exc}"), "quota_exceeded"
    return None


async def _create_in(
    uow: UnitOfWork,
    command: CreateAllocation,
    profile: MigProfile | None,
    settings: GpuaasSettings,
    live: LiveIndex,
    booked: list[Decision],
    refused_as: tuple[ProblemError, str] | None = None,
) -> tuple[AllocationOutcome, int | None]:
    """The allocation, placed or rejected. `refused_as`: a refusal the caller already
    decided (a replica command whose project or tenant may not launch), recorded like the
    others."""
    life = Lifecycle(uow, settings)
    launched = None
    if command.bundle is not None and refused_as is None:
        # The gate first: a refused bundle is answered like a malformed request, before
        # anything is recorded. A replica command has no caller to answer: its refusal is
        # recorded as a rejected allocation (reason bundle_<reason>) that names the replica.
        try:
            launched = await launch_gate.check(
                uow, command.tenant_id, command.project_id, command.bundle, life.now
            )
        except LaunchRefusedProblem as exc:
            if command.replica is None:
                raise
            refused_as = exc, "bundle_" + exc.reason.replace("-", "_")
    requested = units(profile, command.count)
    a, first = new_allocation(
        uuid7(),
        command.tenant_id,
        command.project_id,
        command.sku,
        command.mig_profile,
        command.count,
        life.now,
        command.idle_stop_after_s,
        launched,
        command.replica,
        command.runtime,
    )
    repo = AllocationRepository(uow)
    await repo.add(a, requested)
    await emit(uow, first)
    refused = refused_as or await _rejection(uow, command, a, requested, settings, life.now)
    decision = None
    if refused is None:
        decision = await _schedule(uow, live, a, profile)
        if decision is not None:
            booked.append(decision)
        else:
            refused = (
                NoCapacity(
                    f"allocation {a.id} rejected: no {command.mig_profile or command.sku}"
                    f" x{command.count} free on one ready node"
                ),
                "no_capacity",
            )
    if refused is not None:
        rejection, reason = refused
        a = await life.move(a, AllocationState.REJECTED, reason=reason)
        return AllocationOutcome(AllocationView(a, []), rejection), None
    assert decision is not None
    a = await life.move(a, AllocationState.SCHEDULED, node_id=decision.node_id)
    instances = (await repo.instances([a.id])).get(a.id, [])
    # Last statement before commit: the generation row's lock serializes only this.
    bumped = await GenerationRepository(uow).bump([b.gpu_id for b in decision.bookings])
    return AllocationOutcome(AllocationView(a, instances)), bumped.get(command.sku)


async def _view_one(repo: AllocationRepository, a: Allocation) -> AllocationView:
    """One allocation as the API shows it: its slices, and whether the launch gate would
    still pass its release."""
    refusals = await launch_gate.standing(repo.uow, [a], dt.datetime.now(dt.UTC))
    return AllocationView(a, (await repo.instances([a.id])).get(a.id, []), refusals.get(a.id))


async def get_allocation(db: Database, allocation_id: uuid.UUID) -> AllocationView:
    async with db.unit_of_work() as uow:
        repo = AllocationRepository(uow)
        a = await repo.get(allocation_id)
        if a is None:
            raise NotFound(f"allocation {allocation_id} not found")
        return await _view_one(repo, a)


async def list_allocations(
    db: Database,
    tenant_id: uuid.UUID,
    project_id: uuid.UUID,
    limit: int,
    after: uuid.UUID | None,
) -> list[AllocationView]:
    async with db.unit_of_work() as uow:
        repo = AllocationRepository(uow)
        items = await repo.list_for_project(tenant_id, project_id, limit, after)
        instances = await repo.instances([a.id for a in items])
        refusals = await launch_gate.standing(uow, items, dt.datetime.now(dt.UTC))
        return [AllocationView(a, instances.get(a.id, []), refusals.get(a.id)) for a in items]


async def release_allocation(
    db: Database,
    allocation_id: uuid.UUID,
    settings: GpuaasSettings,
    authorize: Callable[[Allocation], None],
    reason: str = USER_RELEASE,
) -> AllocationView:
    async with db.unit_of_work() as uow:
        repo = AllocationRepository(uow)
        a = await repo.get(allocation_id, lock=True)
        if a is None:
            raise NotFound(f"allocation {allocation_id} not found")
        authorize(a)
        if a.state not in RELEASABLE and a.state != AllocationState.RELEASING:
            raise IllegalState(f"allocation {a.id} is {a.state}; it cannot be released")
        try:
            a = await Lifecycle(uow, settings).apply(a, release_steps(a.state, reason))
        except IllegalTransition as exc:
            raise IllegalState(str(exc)) from None
        view = await _view_one(repo, a)
        await uow.commit()
    return view
