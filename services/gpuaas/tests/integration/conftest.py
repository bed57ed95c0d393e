import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from gpuaas.api.routes import encode_outcome
from gpuaas.app.allocations import CreateAllocation, create_allocation
from gpuaas.app.nodes import GpuInventory, register_node
from gpuaas.app.projects import project_handler
from gpuaas.settings import GpuaasSettings
from gpuaas.store.repository import PUBLIC_SCOPE, PriceRepository
from gpucloud_contracts.events.iam import ProjectCreated
from gpucloud_contracts.gpus import list_price_book
from platformkit.db import Database
from platformkit.envelope import CloudEvent, new_event
from platformkit.migrate import apply_migrations
from platformkit.service import KIT_MIGRATIONS


@pytest.fixture
def gpuaas_url(fresh_database: str) -> str:
    apply_migrations(fresh_database, [KIT_MIGRATIONS, ("gpuaas", "gpuaas.store.migrations")])
    return fresh_database


@pytest.fixture
async def db(gpuaas_url: str) -> AsyncIterator[Database]:
    database = Database(gpuaas_url, pool_size=12)
    yield database
    await database.dispose()


async def add_node(db: Database, sku: str = "h100-80gb", gpus: int = 1, name: str | None = None):
    name = name or f"node-{uuid.uuid4().hex[:8]}"
    return await register_node(
        db,
        name,
        "static",
        None,
        [GpuInventory(i, sku, f"GPU-{uuid.uuid4()}") for i in range(gpus)],
    )


async def outbox(db: Database, subject: uuid.UUID, topic: str | None = None) -> list:
    async with db.unit_of_work() as uow:
        return await uow.fetch_all(
            "SELECT type, topic, payload FROM outbox WHERE subject = :s"
            " AND (CAST(:t AS text) IS NULL OR topic = CAST(:t AS text)) ORDER BY seq",
            {"s": str(subject), "t": topic},
        )


LIST_PRICES_FROM = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
FUNDED_MICROS = 10**12


async def fund(db: Database, tenant: uuid.UUID, available_micros: int = FUNDED_MICROS) -> None:
    """What billing tells gpuaas about a tenant that can launch (its consumers' handlers): a
    balance standing (`ok`, USD) unless one is projected already, and billing's public list
    price book (billing.price.v1). The money gate fails closed without them."""
    async with db.unit_of_work() as uow:
        rows = await uow.fetch_all(
            "SELECT DISTINCT price_key FROM price_versions WHERE scope = :public",
            {"public": PUBLIC_SCOPE},
        )
    known = {r["price_key"] for r in rows}
    for version, (key, micros) in enumerate(sorted(list_price_book().items()), 1):
        if key in known:
            continue
        # One transaction a row: the service's own price-book consumer may be applying
        # billing's announcements of the same keys (in another order) at the same time.
        async with db.unit_of_work() as uow:
            await PriceRepository(uow).apply(
                {
                    "price_key": key,
                    "tenant_id": None,
                    "currency": "USD",
                    "effective_from": LIST_PRICES_FROM,
                    "price_id": uuid.uuid5(uuid.NAMESPACE_URL, key),
                    "micros_per_hour": micros,
                    "min_increment_s": 1,
                    "version": version,
                }
            )
            await uow.commit()
    async with db.unit_of_work() as uow:
        await uow.execute(
            "INSERT INTO balance_standing (tenant_id, standing, available_micros, currency,"
            " ledger_sequence, as_of) VALUES (:t, 'ok', :a, 'USD', 1, now())"
            " ON CONFLICT (tenant_id) DO NOTHING",
            {"t": tenant, "a": available_micros},
        )
        await uow.commit()


async def create(
    db: Database, command: CreateAllocation, settings: GpuaasSettings, funded: bool = True
) -> tuple[int, Any]:
    """The use case as the route runs it: (status, JSON body), a rejection as its problem.
    `funded`: the tenant first gets a balance and the list prices (`fund`)."""
    if funded:
        await fund(db, command.tenant_id)
    reply = await create_allocation(db, command, settings, encode_outcome("/allocations"))
    return reply.status, json.loads(reply.body)


def iam_event(type_: str, subject: uuid.UUID, payload: Any, tenant: uuid.UUID) -> CloudEvent:
    return new_event(
        type=type_,
        source="iam",
        subject=str(subject),
        payload=msgspec.json.encode(payload),
        tenant=str(tenant),
    )


def project_event(tenant: uuid.UUID, project: uuid.UUID) -> CloudEvent:
    payload = ProjectCreated(
        project_id=project,
        tenant_id=tenant,
        name="Project",
        slug=f"p-{project.hex[:8]}",
        created_at=dt.datetime.now(dt.UTC),
    )
    return iam_event("iam.project.created", project, payload, tenant)


async def project_created(db: Database, tenant: uuid.UUID, project: uuid.UUID) -> None:
    """What iam.project.created does to gpuaas's projection (its own consumer's handler)."""
    async with db.unit_of_work() as uow:
        await project_handler()(project_event(tenant, project), uow)
        await uow.commit()


async def new_project(db: Database) -> tuple[uuid.UUID, uuid.UUID]:
    """A tenant and a project of it that iam created (as gpuaas has projected them), funded
    (`fund`)."""
    tenant, project = uuid.uuid4(), uuid.uuid4()
    await project_created(db, tenant, project)
    await fund(db, tenant)
    return tenant, project
