"""Periodic work of gpuaas, safe with several replicas (rows are claimed with SKIP LOCKED):
silent nodes go offline, due release retries run (with backoff, then release_failed), and
running allocations close their usage intervals every metering period, and running
allocations idle for longer than their idle policy are released (reason idle_stop)."""

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable

from gpuaas.app.lifecycle import close_usage, move, now_utc, release
from gpuaas.app.nodes import mark_silent_nodes_offline
from gpuaas.app.providers import Provider
from gpuaas.domain.allocations import (
    IDLE_STOP_REASON,
    MAX_RELEASE_ATTEMPTS,
    AllocationState,
    is_idle,
)
from gpuaas.settings import GpuaasSettings
from gpuaas.store.repository import AllocationRepository
from platformkit.db import Database

log = logging.getLogger(__name__)


async def retry_releases(db: Database, settings: GpuaasSettings) -> int:
    now = now_utc()
    period = dt.timedelta(seconds=settings.metering_period_s)
    async with db.unit_of_work() as uow:
        due = await AllocationRepository(uow).lock_where(
            "state = 'releasing' AND next_release_at <= :now", {"now": now}, limit=200
        )
        for a in due:
            if a.release_attempts >= MAX_RELEASE_ATTEMPTS:
                await move(
                    uow,
                    a,
                    AllocationState.RELEASE_FAILED,
                    now=now,
                    period=period,
                    reason="release_retries_exhausted",
                )
            else:
                await move(
                    uow, a, AllocationState.RELEASING, now=now, period=period, reason="retry"
                )
        await uow.commit()
    return len(due)


async def close_usage_intervals(db: Database, settings: GpuaasSettings) -> int:
    now = now_utc()
    period = dt.timedelta(seconds=settings.metering_period_s)
    repo_count = 0
    async with db.unit_of_work() as uow:
        repo = AllocationRepository(uow)
        due = await repo.lock_where(
            "state = 'running' AND usage_cursor <= :edge", {"edge": now - period}, limit=500
        )
        for a in due:
            updated = await close_usage(uow, a, now, period, final=False)
            await repo.save(updated)
            repo_count += updated.usage_sequence - a.usage_sequence
        await uow.commit()
    return repo_count


async def stop_idle_allocations(
    db: Database, settings: GpuaasSettings, clock: Callable[[], dt.datetime] = now_utc
) -> int:
    """Release running allocations whose idle policy has run out (the query narrows, the
    domain's is_idle decides)."""
    now = clock()
    period = dt.timedelta(seconds=settings.metering_period_s)
    stopped = 0
    async with db.unit_of_work() as uow:
        candidates = await AllocationRepository(uow).lock_where(
            "state = 'running' AND idle_stop_after_s IS NOT NULL"
            " AND last_active_at <= CAST(:now AS timestamptz)"
            " - make_interval(secs => idle_stop_after_s)",
            {"now": now},
            limit=200,
        )
        for a in candidates:
            if is_idle(a, now):
                await release(uow, a, now=now, period=period, reason=IDLE_STOP_REASON)
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


async def sweep_forever(
    db: Database, settings: GpuaasSettings, provider: Provider | None = None
) -> None:
    steps = [
        mark_silent_nodes_offline,
        retry_releases,
        close_usage_intervals,
        stop_idle_allocations,
    ]
    if provider is not None:
        steps.append(provider.reconcile)
    listening = Listening(time.monotonic())
    while True:
        for step in steps:
            judging_silence = step is mark_silent_nodes_offline
            if judging_silence and not listening.long_enough(
                time.monotonic(), settings.node_heartbeat_timeout_s
            ):
                continue
            try:
                await step(db, settings)
            except asyncio.CancelledError:
                raise
            except Exception:
                if judging_silence:
                    listening.interrupted(time.monotonic())
                name = getattr(step, "__name__", repr(step))
                log.exception("sweep step failed", extra={"fields": {"step": name}})
        await asyncio.sleep(settings.sweep_interval_s)
