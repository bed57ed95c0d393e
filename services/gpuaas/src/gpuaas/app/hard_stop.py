"""The hard stop gpuaas enforces on its own: a tenant whose projected balance has run out
(plus a grace) has its live allocations released with reason `balance_exhausted`, the same
release billing's `billing.balance.exhausted` triggers (app/balance.py). It uses only
gpuaas's projections (balance_standing, price_versions) and its own allocations, so the
overdraft stays bounded while billing or Kafka is down: at most the grace plus one sweep
interval of the tenant's burn past the projected zero.

The projection (`domain.runway.projected_balance`): billing's `available_micros` at its
`as_of` minus what each of the tenant's allocations burned since max(`as_of`, its
`running_since`), until now or the end of its final usage interval, at the price in effect
now (the tenant's override, else the public price, in the balance's currency; an unpriced
key burns nothing). The grace is GPUCLOUD_HARD_STOP_GRACE_S (10 s) of what still runs.
"""

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from gpuaas.app.lifecycle import Lifecycle, now_utc
from gpuaas.domain.allocations import BALANCE_EXHAUSTED, DESIRED_ON_NODE, release_steps
from gpuaas.domain.catalog import SKUS
from gpuaas.domain.runway import Burning, hard_stop_due, price_in_effect
from gpuaas.settings import GpuaasSettings
from gpuaas.store.repository import AllocationRepository, BalanceRepository, PriceRepository
from platformkit.db import Database, UnitOfWork


async def _due(
    uow: UnitOfWork, settings: GpuaasSettings, now: dt.datetime, tenants: list[uuid.UUID] | None
) -> list[uuid.UUID]:
    """The tenants (of `tenants`, or all with a running allocation) whose hard stop is due;
    with `tenants`, their balance rows stay locked until the transaction ends."""
    found = await BalanceRepository(uow).burning(tenants, lock=tenants is not None)
    if not found:
        return []
    keyed: list[tuple[Any, list[tuple[str, Any]]]] = [
        (b, [(SKUS[r["sku"]].price_key(r["mig_profile"]), r) for r in rows]) for b, rows in found
    ]
    versions = await PriceRepository(uow).in_effect(
        [b["tenant_id"] for b, _ in keyed],
        sorted({b["currency"] for b, _ in keyed}),
        sorted({k for _, rows in keyed for k, _ in rows}),
        now,
    )
    due = []
    for b, rows in keyed:
        burning = []
        for key, r in rows:
            price = price_in_effect(versions, key, b["tenant_id"], b["currency"], now)
            if price is not None:
                burning.append(
                    Burning(price.micros_per_hour * r["count"], r["running_since"], r["until"])
                )
        if hard_stop_due(
            b["available_micros"], b["as_of"], burning, now, settings.hard_stop_grace_s
        ):
            due.append(b["tenant_id"])
    return due


async def stop_exhausted_tenants(
    db: Database, settings: GpuaasSettings, clock: Callable[[], dt.datetime] = now_utc
) -> int:
    """One pass: release the live allocations of every tenant whose projected balance is
    at or below zero minus the grace. The candidates are found without locks, then each is
    decided again with its balance row locked (a top-up being applied waits, or wins)."""
    async with db.unit_of_work() as uow:
        candidates = await _due(uow, settings, clock(), None)
    released = 0
    for tenant in candidates:
        async with db.unit_of_work() as uow:
            life = Lifecycle(uow, settings, clock())
            if await _due(uow, settings, life.now, [tenant]):
                repo = AllocationRepository(uow)
                for a in await repo.lock_of_tenant(tenant, DESIRED_ON_NODE):
                    await life.apply(a, release_steps(a.state, BALANCE_EXHAUSTED))
                    released += 1
            await uow.commit()
    return released
