"""Allocation use cases. Each opens one unit of work: the allocation, its booked slices,
its outbox events and the idempotency record commit together or not at all."""

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
from sqlalchemy.exc import IntegrityError

from gpuaas.app.capacity import LiveIndex, live_index
from gpuaas.app.errors import BalanceExhausted, IllegalState, NoCapacity, QuotaExceededProblem
from gpuaas.app.lifecycle import emit, move, now_utc, release
from gpuaas.app.prices import runway_shortfall
from gpuaas.domain.allocations import (
    RELEASABLE,
    Allocation,
    AllocationState,
    IllegalTransition,
    idle_stop_error,
    new_allocation,
)
from gpuaas.domain.catalog import SKUS, MigProfile
from gpuaas.domain.placement import Decision
from gpuaas.domain.quota import QuotaExceeded, check_quota, units
from gpuaas.settings import GpuaasSettings
from gpuaas.store.repository import (
    AllocationRepository,
    BalanceRepository,
    GenerationRepository,
    QuotaRepository,
    SliceTaken,
)
from platformkit import idempotency
from platformkit.db import Database, UnitOfWork
from platformkit.errors import Conflict, NotFound, ProblemError, ValidationFailed
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


@dataclasses.dataclass(frozen=True)
class AllocationView:
    allocation: Allocation
    instances: list[Any]


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


def _problem_body(error: ProblemError, instance: str) -> tuple[int, bytes]:
    return error.status, msgspec.json.encode(error.to_problem(instance))


async def create_allocation(
    db: Database,
    command: CreateAllocation,
    settings: GpuaasSettings,
    render: Callable[[AllocationView], bytes],
) -> tuple[int, bytes, bool]:
    """Returns (status, body, is_problem). A rejection (no capacity, quota, balance) is
    recorded as a rejected allocation with its events, and answered as a problem."""
    profile = validate(command)
    hashed: list[object] = [str(command.project_id), command.sku, command.mig_profile]
    hashed.append(command.count)
    if command.idle_stop_after_s is not None:
        # Only when set: keys stored before the idle policy existed keep their hash.
        hashed.append(command.idle_stop_after_s)
    body_hash = idempotency.request_hash(msgspec.json.encode(hashed))
    scope = f"gpuaas.allocations:{command.project_id}"
    period = dt.timedelta(seconds=settings.metering_period_s)
    live = live_index(db, command.sku)
    booked: list[Decision] = []
    generation: int | None = None
    try:
        async with db.unit_of_work() as uow:
            status, body, generation = await _create_in(
                uow, command, profile, body_hash, scope, period, settings, render, live, booked
            )
    finally:
        if booked and uow.committed:
            live.committed(generation)
        elif booked:
            live.mark_dirty([d.node_id for d in booked])
    return status, body, status >= 400


async def _create_in(
    uow: UnitOfWork,
    command: CreateAllocation,
    profile: MigProfile | None,
    body_hash: str,
    scope: str,
    period: dt.timedelta,
    settings: GpuaasSettings,
    render: Callable[[AllocationView], bytes],
    live: LiveIndex,
    booked: list[Decision],
) -> tuple[int, bytes, int | None]:
    if command.idempotency_key:
        stored = await idempotency.find(uow, scope, command.idempotency_key, body_hash)
        if stored is not None:
            return stored.status, stored.body, None
    now = now_utc()
    requested = units(profile, command.count)
    a, first = new_allocation(
        uuid7(),
        command.tenant_id,
        command.project_id,
        command.sku,
        command.mig_profile,
        command.count,
        now,
        command.idle_stop_after_s,
    )
    repo = AllocationRepository(uow)
    await repo.add(a, requested)
    await emit(uow, first)
    rejection: ProblemError | None = None
    limit = await QuotaRepository(uow).lock(
        command.tenant_id, command.project_id, settings.default_project_quota
    )
    if await BalanceRepository(uow).standing(command.tenant_id) == "exhausted":
        rejection = BalanceExhausted(f"allocation {a.id} rejected: balance exhausted")
        reason = "balance_exhausted"
    elif shortfall := await runway_shortfall(
        uow,
        command.tenant_id,
        SKUS[command.sku].price_key(command.mig_profile),
        command.count,
        settings.min_runway_s,
        now,
    ):
        # The same problem type as an exhausted balance: both mean "top up first".
        rejection = BalanceExhausted(f"allocation {a.id} rejected: {shortfall}")
        reason = "insufficient_runway"
    else:
        try:
            check_quota(limit, await repo.units_in_use(command.project_id), requested)
        except QuotaExceeded as exc:
            rejection = QuotaExceededProblem(f"allocation {a.id} rejected: {exc}")
            reason = "quota_exceeded"
    decision = None
    if rejection is None:
        decision = await _schedule(uow, live, a, profile)
        if decision is not None:
            booked.append(decision)
        else:
            rejection = NoCapacity(
                f"allocation {a.id} rejected: no {command.mig_profile or command.sku}"
                f" x{command.count} free on one ready node"
            )
            reason = "no_capacity"
    if rejection is not None:
        a = await move(uow, a, AllocationState.REJECTED, now=now, period=period, reason=reason)
        status, body = _problem_body(rejection, "/v1/gpu/allocations")
    else:
        a = await move(
            uow, a, AllocationState.SCHEDULED, now=now, period=period, node_id=decision.node_id
        )
        instances = (await repo.instances([a.id])).get(a.id, [])
        status, body = 201, render(AllocationView(a, instances))
    if command.idempotency_key:
        try:
            await idempotency.remember(uow, scope, command.idempotency_key, body_hash, status, body)
        except IntegrityError:
            # The same key raced us and committed first: roll all of this back.
            raise Conflict(
                f"a request with Idempotency-Key {command.idempotency_key!r} completed"
                " concurrently; retry to get its response"
            ) from None
    generation = None
    if decision is not None:
        # Last statement before commit: the generation row's lock serializes only this.
        bumped = await GenerationRepository(uow).bump([b.gpu_id for b in decision.bookings])
        generation = bumped.get(command.sku)
    await uow.commit()
    return status, body, generation


async def get_allocation(db: Database, allocation_id: uuid.UUID) -> AllocationView:
    async with db.unit_of_work() as uow:
        repo = AllocationRepository(uow)
        a = await repo.get(allocation_id)
        if a is None:
            raise NotFound(f"allocation {allocation_id} not found")
        return AllocationView(a, (await repo.instances([a.id])).get(a.id, []))


async def list_allocations(
    db: Database, project_id: uuid.UUID, limit: int, after: uuid.UUID | None
) -> list[AllocationView]:
    async with db.unit_of_work() as uow:
        repo = AllocationRepository(uow)
        items = await repo.list_for_project(project_id, limit, after)
        instances = await repo.instances([a.id for a in items])
        return [AllocationView(a, instances.get(a.id, [])) for a in items]


async def release_allocation(
    db: Database,
    allocation_id: uuid.UUID,
    settings: GpuaasSettings,
    authorize: Callable[[Allocation], None],
    reason: str = "user_release",
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
            a = await release(
                uow,
                a,
                now=now_utc(),
                period=dt.timedelta(seconds=settings.metering_period_s),
                reason=reason,
            )
        except IllegalTransition as exc:
            raise IllegalState(str(exc)) from None
        view = AllocationView(a, (await repo.instances([a.id])).get(a.id, []))
        await uow.commit()
    return view
