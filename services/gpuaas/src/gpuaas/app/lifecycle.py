"""Applying allocation transitions inside a unit of work: the domain decides, this module
saves the row and writes the event (and, on leaving running, the final usage interval)
to the outbox in the same transaction."""

import dataclasses
import datetime as dt
import uuid

from gpuaas.domain.allocations import (
    ALLOCATION_TOPIC,
    Allocation,
    AllocationState,
    Transition,
    transition,
)
from gpuaas.domain.catalog import SKUS
from gpuaas.domain.metering import USAGE_TOPIC, USAGE_TYPE, UsageInterval, due_intervals
from gpuaas.store.repository import AllocationRepository, NodeRepository
from gpucloud_contracts.events.gpuaas import AllocationChanged
from gpucloud_contracts.events.metering import UsageRecorded
from platformkit.db import UnitOfWork
from platformkit.outbox import add_event

SOURCE = "gpuaas"


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def emit(uow: UnitOfWork, t: Transition) -> None:
    a = t.allocation
    await add_event(
        uow,
        topic=ALLOCATION_TOPIC,
        type=t.type.value,
        source=SOURCE,
        subject=str(a.id),
        tenant=str(a.tenant_id),
        payload=AllocationChanged(
            allocation_id=a.id,
            tenant_id=a.tenant_id,
            project_id=a.project_id,
            state=a.state.value,
            previous_state=t.previous.value if t.previous else None,
            reason=t.reason,
            sku=a.sku,
            mig_profile=a.mig_profile,
            quantity=a.count,
            node_id=a.node_id,
            attempt=t.attempt,
            occurred_at=a.updated_at,
        ),
    )


async def emit_usage(uow: UnitOfWork, a: Allocation, intervals: list[UsageInterval]) -> None:
    price_key = SKUS[a.sku].price_key(a.mig_profile)
    for i in intervals:
        await add_event(
            uow,
            topic=USAGE_TOPIC,
            type=USAGE_TYPE,
            source=SOURCE,
            subject=str(a.id),
            tenant=str(a.tenant_id),
            # The CloudEvents id is the interval id: a re-emitted interval deduplicates.
            event_id=i.interval_id,
            payload=UsageRecorded(
                interval_id=i.interval_id,
                allocation_id=a.id,
                tenant_id=a.tenant_id,
                project_id=a.project_id,
                sequence=i.sequence,
                sku=a.sku,
                mig_profile=a.mig_profile,
                price_key=price_key,
                quantity=a.count,
                started_at=i.started_at,
                ended_at=i.ended_at,
                duration_ms=i.duration_ms,
                final=i.final,
            ),
        )


async def close_usage(
    uow: UnitOfWork, a: Allocation, now: dt.datetime, period: dt.timedelta, *, final: bool
) -> Allocation:
    """Emit the closed intervals due (and the final remainder); returns the moved cursor."""
    if a.usage_cursor is None:
        return a
    intervals = due_intervals(a.id, a.usage_cursor, a.usage_sequence, now, period, final=final)
    if not intervals:
        return a
    await emit_usage(uow, a, intervals)
    return dataclasses.replace(
        a, usage_cursor=intervals[-1].ended_at, usage_sequence=intervals[-1].sequence + 1
    )


async def move(
    uow: UnitOfWork,
    allocation: Allocation,
    target: AllocationState,
    *,
    now: dt.datetime,
    period: dt.timedelta,
    reason: str | None = None,
    node_id: uuid.UUID | None = None,
) -> Allocation:
    """One transition, saved, with its event (and the final usage when leaving running)."""
    if allocation.state == AllocationState.RUNNING and target != AllocationState.RUNNING:
        allocation = await close_usage(uow, allocation, now, period, final=True)
    updated, event = transition(allocation, target, now=now, reason=reason, node_id=node_id)
    await AllocationRepository(uow).save(updated)
    await emit(uow, event)
    if updated.node_id is not None:
        await NodeRepository(uow).notify_changed(updated.node_id)
    if target in (AllocationState.RELEASED,):
        await AllocationRepository(uow).free(updated.id, now)
    return updated


async def release(
    uow: UnitOfWork, a: Allocation, *, now: dt.datetime, period: dt.timedelta, reason: str
) -> Allocation:
    """Send a live allocation to releasing (through failed when it never ran)."""
    if a.state in (AllocationState.RELEASING, AllocationState.RELEASE_FAILED):
        return a
    if reason == "node_lost" and a.state in (
        AllocationState.SCHEDULED,
        AllocationState.PROVISIONING,
    ):
        a = await move(uow, a, AllocationState.FAILED, now=now, period=period, reason=reason)
    return await move(uow, a, AllocationState.RELEASING, now=now, period=period, reason=reason)
