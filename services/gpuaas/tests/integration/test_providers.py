"""The simulated-cloud provider against a real gpuaas HTTP server: it starts a node-agent
process when free GPUs run short (the agent registers as a simulated-cloud node) and
retires it, stopping the process, once it is idle and not needed."""

import asyncio
import dataclasses
import socket
import uuid

import pytest
import uvicorn

from gpuaas.app.providers import SimulatedCloudProvider
from gpuaas.bootstrap import DEFINITION
from gpuaas.settings import GpuaasSettings
from platformkit.http import build_service_app
from platformkit.settings import ServiceSettings

pytestmark = pytest.mark.integration
TOKEN = "provider-test-token"


@pytest.fixture
async def gpuaas_server(infra, gpuaas_url):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = ServiceSettings(
        service_name=f"gpuaas-provider-test-{uuid.uuid4().hex[:8]}",
        database_url=gpuaas_url,
        kafka=infra.kafka,
        operator_token=TOKEN,
        # no heartbeats: its name is no service of the fleet (audit dead-letters those)
        heartbeat_interval_s=0,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            build_service_app(dataclasses.replace(DEFINITION, subscriptions=()), settings),
            host="127.0.0.1",
            port=port,
            log_config=None,
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def _nodes(db):
    async with db.unit_of_work() as uow:
        return await uow.fetch_all("SELECT name, provider, state FROM nodes")


async def test_simulated_cloud_creates_and_retires_nodes(gpuaas_server, db, tmp_path):
    provider = SimulatedCloudProvider(
        gpuaas_url=gpuaas_server,
        bootstrap_token=TOKEN,
        inventory="a100-40gb:2",
        min_free_gpus=2,
        idle_retire_s=0,
    )
    settings = GpuaasSettings()
    try:
        await provider.reconcile(db, settings)
        assert len(provider.processes) == 1
        # a fresh interpreter importing the agent (litestar, the kit): seconds on a busy
        # machine, so a generous deadline, polled every 0.1 s
        deadline = asyncio.get_running_loop().time() + 90
        while asyncio.get_running_loop().time() < deadline:
            nodes = await _nodes(db)
            if nodes and nodes[0]["state"] == "ready":
                break
            await asyncio.sleep(0.1)
        assert [(n["provider"], n["state"]) for n in nodes] == [("simulated-cloud", "ready")]
        await provider.reconcile(db, settings)  # enough free GPUs, and this node is needed
        assert len(provider.processes) == 1
        process = next(iter(provider.processes.values()))
        provider.min_free_gpus = 0
        await provider.reconcile(db, settings)  # idle and not needed: retired, process gone
        assert [n["state"] for n in await _nodes(db)] == ["retired"]
        assert provider.processes == {} and process.poll() is not None
    finally:
        provider.close()
