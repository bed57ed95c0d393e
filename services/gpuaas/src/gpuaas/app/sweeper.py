"""Periodic work of gpuaas, safe with several replicas (rows are claimed with SKIP LOCKED):
silent nodes go offline, due release retries run (with backoff, then release_failed), and
running allocations close their usage intervals every metering period."""

import asyncio
import datetime as dt
import logging

from gpuaas.app.lifecycle import close_usage, move, now_utc
from gpuaas.app.nodes import mark_silent_nodes_offline
from gpuaas.app.providers import Provider
from gpuaas.domain.allocations import MAX_RELEASE_ATTEMPTS, AllocationState
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


async def sweep_forever(
    db: Database, settings: GpuaasSettings, provider: Provider | None = None
) -> None:
    steps = [mark_silent_nodes_offline, retry_releases, close_usage_intervals]
    if provider is not None:
        steps.append(provider.reconcile)
    while True:
        for step in steps:
            try:
                await step(db, settings)
            except asyncio.CancelledError:
                raise
            except Exception:
                name = getattr(step, "__name__", repr(step))
                log.exception("sweep step failed", extra={"fields": {"step": name}})
        await asyncio.sleep(settings.sweep_interval_s)
