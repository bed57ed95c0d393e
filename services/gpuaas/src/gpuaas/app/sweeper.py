"""Periodic work of gpuaas, safe with several replicas (rows are claimed with SKIP LOCKED):
silent nodes go offline, due release retries run (with backoff, then release_failed),
running allocations close their usage intervals every metering period, running allocations
idle for longer than their idle policy are released (reason idle_stop), and the live
allocations of a tenant whose projected balance has run out past the grace are released
(reason balance_exhausted; app/hard_stop.py). The domain decides each transition
(domain/allocations.py); these use cases apply them.

`Sweeper.sweep` is one pass over every step, run by the service runtime as the `sweeper`
job every GPUCLOUD_SWEEP_INTERVAL_S; a step that fails is logged and the next one runs.
"""

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable

from gpuaas.app.hard_stop import stop_exhausted_tenants
from gpuaas.app.lifecycle import Lifecycle, now_utc
from gpuaas.app.nodes import mark_silent_nodes_offline
from gpuaas.app.providers import Provider
from gpuaas.domain.allocations import on_idle_check, on_release_retry_due
from gpuaas.settings import GpuaasSettings
from gpuaas.store.repository import AllocationRepository
from platformkit.db import Database

log = logging.getLogger(__name__)


async def retry_releases(db: Database, settings: GpuaasSettings) -> int:
    async with db.unit_of_work() as uow:
        life = Lifecycle(uow, settings)
        due = await AllocationRepository(uow).lock_release_retries_due(life.now, limit=200)
        for a in due:
            await life.apply(a, [on_release_retry_due(a)])
        await uow.commit()
    return len(due)


async def close_usage_intervals(db: Database, settings: GpuaasSettings) -> int:
    closed = 0
    async with db.unit_of_work() as uow:
        life = Lifecycle(uow, settings)
        repo = AllocationRepository(uow)
        for a in await repo.lock_usage_due(life.now - life.period, limit=500):
            updated = await life.close_usage(a, final=False)
            await repo.save(updated)
            closed += updated.usage_sequence - a.usage_sequence
        await uow.commit()
    return closed


async def stop_idle_allocations(
    db: Database, settings: GpuaasSettings, clock: Callable[[], dt.datetime] = now_utc
) -> int:
    """Release running allocations whose idle policy has run out."""
    stopped = 0
    async with db.unit_of_work() as uow:
        life = Lifecycle(uow, settings, clock())
        for a in await AllocationRepository(uow).lock_idle_candidates(life.now, limit=200):
            if steps := on_idle_check(a, life.now):
                await life.apply(a, steps)
                stopped += 1
        await uow.commit()
    return stopped


@dataclasses.dataclass
class Listening:
    """Since when this process has been able to hear the node agents: its start, or the last
    time it could not reach its database (then neither could the agents' syncs). A node's
    silence is evidence only after a whole heartbeat timeout of listening: otherwise a gpuaas
    restart or a database outage longer than the timeout released every running allocation
    as node_lost the moment gpuaas was back, before the agents (backing off up to 10 s) had
    reached it again (found by the chaos run, tools/chaos)."""

    since: float

    def interrupted(self, now: float) -> None:
        self.since = now

    def long_enough(self, now: float, timeout_s: float) -> bool:
        return now - self.since >= timeout_s


Step = Callable[[Database, GpuaasSettings], Awaitable[object]]


@dataclasses.dataclass
class Sweeper:
    db: Database
    settings: GpuaasSettings
    provider: Provider | None = None
    listening: Listening = dataclasses.field(default_factory=lambda: Listening(time.monotonic()))

    @property
    def steps(self) -> list[Step]:
        steps: list[Step] = [
            mark_silent_nodes_offline,
            retry_releases,
            close_usage_intervals,
            stop_idle_allocations,
            stop_exhausted_tenants,
        ]
        if self.provider is not None:
            steps.append(self.provider.reconcile)
        return steps

    async def sweep(self) -> None:
        """One pass; each step on its own, a failed one logged."""
        for step in self.steps:
            judging_silence = step is mark_silent_nodes_offline
            if judging_silence and not self.listening.long_enough(
                time.monotonic(), self.settings.node_heartbeat_timeout_s
            ):
                continue
            try:
                await step(self.db, self.settings)
            except Exception:
                if judging_silence:
                    self.listening.interrupted(time.monotonic())
                name = getattr(step, "__name__", repr(step))
                log.exception("sweep step failed", extra={"fields": {"step": name}})
