"""gpuaas's projection of iam's projects and tenants through real Kafka: the kit's
subscription (its inbox) lands an iam.project.created once, however often it is delivered,
and the project then answers where it read as 404 before."""

import asyncio
import dataclasses
import datetime as dt
import uuid

import pytest
from litestar.testing import AsyncTestClient

from gpuaas.bootstrap import DEFINITION
from gpucloud_contracts.events.iam import TenantCreated, TenantSuspended
from platformkit import kafka
from platformkit.http import build_service_app
from platformkit.settings import ServiceSettings

from .conftest import iam_event, project_event

pytestmark = pytest.mark.integration
AUTH = {"Authorization": "Bearer test-operator-token"}


@pytest.fixture
async def client(infra, gpuaas_url):
    settings = ServiceSettings(
        service_name=f"gpuaas-test-{uuid.uuid4().hex[:8]}",
        database_url=gpuaas_url,
        kafka=infra.kafka,
        operator_token="test-operator-token",
        heartbeat_interval_s=0,
        outbox_poll_interval_s=0.2,
    )
    wanted = {"projects", "tenants"}
    definition = dataclasses.replace(
        DEFINITION, subscriptions=[s for s in DEFINITION.subscriptions if s.consumer in wanted]
    )
    async with AsyncTestClient(build_service_app(definition, settings)) as c:
        yield c


async def _send(infra, topic: str, *events) -> None:
    producer = kafka.producer(infra.kafka, "gpuaas-tests")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                topic, value=event.data, key=event.key, headers=event.headers()
            )
    finally:
        await producer.stop()


async def _eventually(check, within=60.0):
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.3)


async def test_a_project_event_lands_one_row_however_often_delivered(client, infra, db):
    tenant, project = uuid.uuid4(), uuid.uuid4()
    base = f"/v1/gpu/tenants/{tenant}/projects/{project}/allocations"
    assert (await client.get(base, headers=AUTH)).status_code == 404
    event = project_event(tenant, project)
    await _send(infra, "iam.project.v1", event, event)  # delivered twice

    async def projected():
        async with db.unit_of_work() as uow:
            return await uow.fetch_one(
                "SELECT tenant_id FROM projects WHERE project_id = :p", {"p": project}
            )

    assert await _eventually(projected)
    # a later marker on the same partition: once it is applied, the duplicate was seen
    marker = project_event(tenant, project)
    await _send(infra, "iam.project.v1", marker)

    async def marker_claimed():
        async with db.unit_of_work() as uow:
            return await uow.fetch_one(
                "SELECT 1 FROM inbox WHERE consumer = 'projects' AND event_id = :e",
                {"e": marker.id},
            )

    assert await _eventually(marker_claimed)
    async with db.unit_of_work() as uow:
        rows = await uow.fetch_all(
            "SELECT tenant_id FROM projects WHERE project_id = :p", {"p": project}
        )
        claims = await uow.fetch_all(
            "SELECT event_id FROM inbox WHERE consumer = 'projects' AND event_id = :e",
            {"e": event.id},
        )
    assert [r["tenant_id"] for r in rows] == [tenant] and len(claims) == 1
    assert (await client.get(base, headers=AUTH)).status_code == 200
    # the project belongs to its tenant only: under another tenant it is still unknown
    elsewhere = f"/v1/gpu/tenants/{uuid.uuid4()}/projects/{project}/allocations"
    assert (await client.get(elsewhere, headers=AUTH)).status_code == 404


async def test_tenant_events_keep_the_tenants_status(client, infra, db):
    tenant = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    created = TenantCreated(
        tenant_id=tenant, name="T", slug=f"t-{tenant.hex[:8]}", status="active", created_at=now
    )
    suspended = TenantSuspended(tenant_id=tenant, reason="test", suspended_at=now)
    await _send(
        infra,
        "iam.tenant.v1",
        iam_event("iam.tenant.created", tenant, created, tenant),
        iam_event("iam.tenant.suspended", tenant, suspended, tenant),
    )

    async def status():
        async with db.unit_of_work() as uow:
            row = await uow.fetch_one(
                "SELECT status FROM tenants WHERE tenant_id = :t", {"t": tenant}
            )
        return row is not None and row["status"] == "suspended"

    assert await _eventually(status)
