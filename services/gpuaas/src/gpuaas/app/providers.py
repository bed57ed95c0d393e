"""Node providers behind one interface. A provider owns the lifecycle of the nodes it
brings: `reconcile` runs on every sweep and may create or retire nodes.

- `static`: nodes register themselves (an operator installed the agent); nothing to do.
- `simulated-cloud`: creates nodes on demand by starting node-agent processes with a
  declared inventory when free whole GPUs fall below `min_free_gpus`, and retires nodes of
  its own that have been idle (no live allocation) for `idle_retire_s`.

A real cloud adapter is one more class with the same two methods (create an instance that
boots the agent; terminate it).
"""

import contextlib
import dataclasses
import datetime as dt
import os
import socket
import subprocess
import sys
import uuid
from typing import Protocol

from gpuaas.app.lifecycle import now_utc
from gpuaas.app.nodes import set_node_state
from gpuaas.domain.nodes import NodeState
from gpuaas.settings import GpuaasSettings
from gpuaas.store.repository import NodeRepository
from platformkit.db import Database


class Provider(Protocol):
    name: str

    async def reconcile(self, db: Database, settings: GpuaasSettings) -> None: ...

    def close(self) -> None: ...


class StaticProvider:
    name = "static"

    async def reconcile(self, db: Database, settings: GpuaasSettings) -> None:
        return None

    def close(self) -> None:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class SimulatedCloudProvider:
    gpuaas_url: str
    bootstrap_token: str
    inventory: str = "h100-80gb:8"
    min_free_gpus: int = 8
    max_nodes: int = 4
    idle_retire_s: float = 300.0
    name: str = "simulated-cloud"
    processes: dict[str, subprocess.Popen[bytes]] = dataclasses.field(default_factory=dict)

    async def reconcile(self, db: Database, settings: GpuaasSettings) -> None:
        async with db.unit_of_work() as uow:
            nodes = NodeRepository(uow)
            free_gpus = await nodes.free_ready_gpus()
            idle = await nodes.idle_of_provider(
                self.name, now_utc() - dt.timedelta(seconds=self.idle_retire_s)
            )
        starting = [p for p in self.processes.values() if p.poll() is None]
        if free_gpus < self.min_free_gpus and len(starting) < self.max_nodes:
            self.start_node()
            return
        for node in idle:
            if free_gpus - node["gpus"] < self.min_free_gpus:
                break
            await set_node_state(db, node["id"], NodeState.RETIRED, settings)
            self.stop_node(node["name"])
            free_gpus -= node["gpus"]

    def start_node(self) -> str:
        name = f"sim-{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            "GPUCLOUD_SERVICE_NAME": "gpuaas-node-agent",
            "GPUCLOUD_NODE_NAME": name,
            "GPUCLOUD_NODE_PROVIDER": self.name,
            "GPUCLOUD_NODE_INVENTORY": self.inventory,
            "GPUCLOUD_GPUAAS_URL": self.gpuaas_url,
            "GPUCLOUD_NODE_BOOTSTRAP_TOKEN": self.bootstrap_token,
            "GPUCLOUD_HTTP_PORT": str(_free_port()),
        }
        env.pop("GPUCLOUD_DATABASE_URL", None)
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "node_agent"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return name

    def stop_node(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        for name in list(self.processes):
            with contextlib.suppress(Exception):
                self.stop_node(name)


def provider_from_env(settings: GpuaasSettings, operator_token: str | None) -> Provider:
    if settings.provider != "simulated-cloud":
        return StaticProvider()
    return SimulatedCloudProvider(
        gpuaas_url=settings.provider_gpuaas_url,
        bootstrap_token=operator_token or "",
        inventory=settings.provider_inventory,
        min_free_gpus=settings.provider_min_free_gpus,
        max_nodes=settings.provider_max_nodes,
        idle_retire_s=settings.provider_idle_retire_s,
    )
