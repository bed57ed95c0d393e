"""The node agent against a real gpuaas app (PostgreSQL + Kafka): register, allocate a MIG
slice, the agent starts the workload and reports it running, release tears it down, and
a restarted agent converges without starting a second workload."""

import dataclasses
import datetime as dt
import uuid

import pytest
from litestar.testing import AsyncTestClient

from gpuaas.app.projects import project_handler
from gpuaas.bootstrap import DEFINITION
from gpucloud_contracts.events.iam import ProjectCreated
from node_agent.agent import AgentSettings, NodeAgent
from node_agent.discovery import SimulatedDiscovery
from platformkit.db import Database
from platformkit.envelope import new_event
from platformkit.http import build_service_app
from platformkit.migrate import apply_migrations
from platformkit.service import KIT_MIGRATIONS
from platformkit.settings import ServiceSettings

from ..conftest import fund_tenant

pytestmark = pytest.mark.integration
TOKEN = "agent-test-token"
# The balance consumer is not needed here (and stopping one mid-join can be slow).
HTTP_ONLY = dataclasses.replace(DEFINITION, subscriptions=())
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def gpuaas_settings(infra, fresh_database):
    apply_migrations(fresh_database, [KIT_MIGRATIONS, ("gpuaas", "gpuaas.store.migrations")])
    return ServiceSettings(
        service_name=f"gpuaas-agent-test-{uuid.uuid4().hex[:8]}",
        database_url=fresh_database,
        kafka=infra.kafka,
        operator_token=TOKEN,
        # no heartbeats: its name is no service of the fleet (audit dead-letters those)
        heartbeat_interval_s=0,
    )


@pytest.fixture
async def gpuaas(gpuaas_settings):
    async with AsyncTestClient(build_service_app(HTTP_ONLY, gpuaas_settings)) as client:
        yield client


async def _project(settings: ServiceSettings) -> str:
    """A tenant's project as gpuaas knows it from iam.project.created (gpuaas answers 404
    for a project iam did not make), the tenant funded and priced as billing's events say;
    the allocations path under it."""
    tenant, project = uuid.uuid4(), uuid.uuid4()
    payload = ProjectCreated(
        project_id=project,
        tenant_id=tenant,
        name="Agent",
        slug=f"p-{project.hex[:8]}",
        created_at=dt.datetime.now(dt.UTC),
    )
    event = new_event(
        type="iam.project.created", source="iam", subject=str(project), payload=payload
    )
    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as uow:
            await project_handler()(event, uow)
            await fund_tenant(uow, tenant)
            await uow.commit()
    finally:
        await db.dispose()
    return f"/v1/gpu/tenants/{tenant}/projects/{project}/allocations"


def _agent(tmp_path, name: str) -> NodeAgent:
    settings = AgentSettings(
        node_name=name, gpuaas_url="http://test", bootstrap_token=TOKEN, state_dir=tmp_path
    )
    return NodeAgent(settings, SimulatedDiscovery(name, "h100-80gb:2"))


async def test_agent_runs_and_tears_down_an_allocation(gpuaas, gpuaas_settings, tmp_path):
    name = f"node-{uuid.uuid4().hex[:6]}"
    agent = _agent(tmp_path, name)
    await agent.sync_once(gpuaas)
    base = await _project(gpuaas_settings)
    r = await gpuaas.post(base, json={"sku": "h100-80gb", "mig_profile": "2g.20gb"}, headers=AUTH)
    assert r.status_code == 201, r.text
    aid = r.json()["id"]

    assert await agent.sync_once(gpuaas)  # receives desired state, starts the workload
    assert agent.reconciler.observed() == {aid: "running"}
    await agent.sync_once(gpuaas)  # reports it
    got = (await gpuaas.get(f"{base}/{aid}", headers=AUTH)).json()
    assert got["state"] == "running" and got["running_since"]

    restarted = _agent(tmp_path, name)  # same state file: adopts the process
    pid = agent.reconciler.workloads[aid].pid
    assert not await restarted.sync_once(gpuaas)
    assert restarted.reconciler.workloads[aid].pid == pid

    await gpuaas.post(f"{base}/{aid}/release", headers=AUTH)
    assert await restarted.sync_once(gpuaas)  # stops it
    await restarted.sync_once(gpuaas)  # reports it gone
    assert (await gpuaas.get(f"{base}/{aid}", headers=AUTH)).json()["state"] == "released"


async def test_gpuaas_restarted_mid_provisioning_converges(gpuaas_settings, tmp_path):
    agent = _agent(tmp_path, f"node-{uuid.uuid4().hex[:6]}")
    base = await _project(gpuaas_settings)
    async with AsyncTestClient(build_service_app(HTTP_ONLY, gpuaas_settings)) as first:
        await agent.sync_once(first)
        aid = (await first.post(base, json={"sku": "h100-80gb"}, headers=AUTH)).json()["id"]
        await agent.sync_once(first)  # the workload starts; gpuaas goes away before the report
    async with AsyncTestClient(build_service_app(HTTP_ONLY, gpuaas_settings)) as second:
        await agent.sync_once(second)
        got = (await second.get(f"{base}/{aid}", headers=AUTH)).json()
        assert got["state"] == "running"
        await second.post(f"{base}/{aid}/release", headers=AUTH)
        await agent.sync_once(second)
        await agent.sync_once(second)
        assert (await second.get(f"{base}/{aid}", headers=AUTH)).json()["state"] == "released"
