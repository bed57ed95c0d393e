"""Quota administration and the availability read model behind GET /v1/gpu/skus."""

import datetime as dt
import uuid
from functools import lru_cache
from typing import Any

from gpuaas.app.events import EVENTS
from gpuaas.domain.catalog import SHAPES
from gpuaas.domain.geometry import Instance, instance_of
from gpuaas.domain.placement import best_start
from gpuaas.settings import GpuaasSettings
from gpuaas.store.repository import AllocationRepository, CapacityRepository, QuotaRepository
from gpucloud_contracts.events.gpuaas import QuotaChanged
from platformkit.db import Database


async def set_quota(db: Database, tenant_id: uuid.UUID, project_id: uuid.UUID, limit: int) -> None:
    """Set the project's limit and announce it (an operator's action: audit records it)."""
    async with db.unit_of_work() as uow:
        quotas = QuotaRepository(uow)
        before = await quotas.get(tenant_id, project_id)
        await quotas.set(tenant_id, project_id, limit)
        await EVENTS.add_event(
            uow,
            "gpuaas.quota.changed",
            subject=str(project_id),
            tenant=str(tenant_id),
            payload=QuotaChanged(
                tenant_id=tenant_id,
                project_id=project_id,
                max_compute_slices=limit,
                previous_max_compute_slices=before["max_compute_slices"] if before else None,
                occurred_at=dt.datetime.now(dt.UTC),
            ),
        )
        await uow.commit()


async def get_quota(
    db: Database, tenant_id: uuid.UUID, project_id: uuid.UUID, settings: GpuaasSettings
) -> tuple[int, int]:
    """(limit, in use) in compute slices, of the tenant's project."""
    async with db.unit_of_work() as uow:
        row = await QuotaRepository(uow).get(tenant_id, project_id)
        in_use = await AllocationRepository(uow).units_in_use(tenant_id, project_id)
    limit = row["max_compute_slices"] if row else settings.default_project_quota
    return limit, in_use


@lru_cache(maxsize=4096)
def _placeable(instances: tuple[Instance, ...], profile_id: int) -> int:
    """How many more instances of a profile fit on a layout, placed by the policy."""
    n = 0
    while (found := best_start(instances, profile_id)) is not None:
        instances = tuple(sorted((*instances, instance_of(SHAPES[profile_id], found[0]))))
        n += 1
    return n


async def availability(db: Database) -> dict[str, dict[str, Any]]:
    async with db.unit_of_work() as uow:
        by_sku = await CapacityRepository(uow).counts_by_sku()
    out: dict[str, dict[str, Any]] = {}
    for sku, entry in by_sku.items():
        gpus = [g for n in entry["nodes"] for g in n.gpus]
        out[sku] = {
            "total": len(gpus),
            "free": sum(g.layout.is_empty for g in gpus),
            "profiles": {
                pid: sum(_placeable(g.layout.instances, pid) for g in gpus) for pid in SHAPES
            },
        }
    return out
