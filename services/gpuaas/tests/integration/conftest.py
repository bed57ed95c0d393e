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
from gpucloud_contracts.events.iam import ProjectCreated
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


async def create(
    db: Database, command: CreateAllocation, settings: GpuaasSettings
) -> tuple[int, Any]:
    """The use case as the route runs it: (status, JSON body), a rejection as its problem."""
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
    """A tenant and a project of it that iam created (as gpuaas has projected them)."""
    tenant, project = uuid.uuid4(), uuid.uuid4()
    await project_created(db, tenant, project)
    return tenant, project
