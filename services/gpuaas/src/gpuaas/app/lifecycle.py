"""Applying allocation transitions inside a unit of work: the domain decides (domain/
allocations.py: `transition` and the policy's `Step`s), this module saves the row and writes
the event (and, on leaving running, the final usage interval) to the outbox in the same
transaction. `Lifecycle` carries what every application needs once: the unit of work, the
clock reading of the use case and the metering period."""

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable

from gpuaas.app.events import EVENTS
from gpuaas.domain.allocations import (
    Allocation,
    AllocationState,
    Step,
    Transition,
    transition,
)
from gpuaas.domain.catalog import SKUS
from gpuaas.domain.metering import USAGE_TYPE, UsageInterval, due_intervals
from gpuaas.settings import GpuaasSettings
from gpuaas.store.repository import AllocationRepository, NodeRepository
from gpucloud_contracts.events.gpuaas import AllocationChanged, LaunchedBundle, ReplicaOwner
from gpucloud_contracts.events.metering import UsageRecorded
from platformkit.db import UnitOfWork


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _changed(
    a: Allocation,
    previous: AllocationState | None,
    reason: str | None,
    attempt: int | None,
    at: dt.datetime,
) -> AllocationChanged:
    return AllocationChanged(
        allocation_id=a.id,
        tenant_id=a.tenant_id,
        project_id=a.project_id,
        state=a.state.value,
        previous_state=previous.value if previous else None,
        reason=reason,
        sku=a.sku,
        mig_profile=a.mig_profile,
        quantity=a.count,
        node_id=a.node_id,
        attempt=attempt,
        bundle=LaunchedBundle(
            tenant_id=a.bundle.tenant_id,
            app=a.bundle.app,
            version=a.bundle.version,
            manifest_digest=a.bundle.digest,
            channel=a.bundle.channel,  # type: ignore[arg-type]
        )
        if a.bundle
        else None,
        # Every event of an app replica's allocation names the replica.
        replica=ReplicaOwner(replica_id=a.replica.replica_id, instance_id=a.replica.instance_id)
        if a.replica
        else None,
        occurred_at=at,
    )


async def emit(uow: UnitOfWork, t: Transition) -> None:
    a = t.allocation
    await EVENTS.add_event(
        uow,
        t.type.value,
        subject=str(a.id),
        tenant=str(a.tenant_id),
        payload=_changed(a, t.previous, t.reason, t.attempt, a.updated_at),
    )


async def emit_readiness(
    uow: UnitOfWork, a: Allocation, event_type: str, reason: str | None, at: dt.datetime
) -> None:
    """`gpuaas.allocation.workload_ready | workload_unready`: the allocation stays running
    (state and previous state both `running`)."""
    await EVENTS.add_event(
        uow,
        event_type,
        subject=str(a.id),
        tenant=str(a.tenant_id),
        payload=_changed(a, a.state, reason, None, at),
    )


async def emit_usage(uow: UnitOfWork, a: Allocation, intervals: list[UsageInterval]) -> None:
    price_key = SKUS[a.sku].price_key(a.mig_profile)
    await EVENTS.add_events(
        uow,
        [
            EVENTS.event(
                USAGE_TYPE,
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
            for i in intervals
        ],
    )


@dataclasses.dataclass
class Lifecycle:
    uow: UnitOfWork
    settings: GpuaasSettings
    now: dt.datetime = dataclasses.field(default_factory=now_utc)

    @property
    def period(self) -> dt.timedelta:
        return self.settings.metering_period

    async def close_usage(self, a: Allocation, *, final: bool) -> Allocation:
        """Emit the closed intervals due (and the final remainder); returns the moved
        cursor (not saved: the caller saves or transitions the allocation)."""
        if a.usage_cursor is None:
            return a
        intervals = due_intervals(
            a.id, a.usage_cursor, a.usage_sequence, self.now, self.period, final=final
        )
        if not intervals:
            return a
        await emit_usage(self.uow, a, intervals)
        return dataclasses.replace(
            a, usage_cursor=intervals[-1].ended_at, usage_sequence=intervals[-1].sequence + 1
        )

    async def move(
        self,
        allocation: Allocation,
        target: AllocationState,
        *,
        reason: str | None = None,
        node_id: uuid.UUID | None = None,
    ) -> Allocation:
        """One transition, saved, with its event (and the final usage when leaving running)."""
        if allocation.state == AllocationState.RUNNING and target != AllocationState.RUNNING:
            allocation = await self.close_usage(allocation, final=True)
        updated, event = transition(
            allocation, target, now=self.now, reason=reason, node_id=node_id
        )
        repo = AllocationRepository(self.uow)
        await repo.save(updated)
        await emit(self.uow, event)
        if updated.node_id is not None:
            await NodeRepository(self.uow).notify_changed(updated.node_id)
        if target == AllocationState.RELEASED:
            await repo.free(updated.id, self.now)
        return updated

    async def apply(self, allocation: Allocation, steps: Iterable[Step]) -> Allocation:
        """Take the policy's steps in order."""
        for step in steps:
            allocation = await self.move(allocation, step.target, reason=step.reason)
        return allocation
