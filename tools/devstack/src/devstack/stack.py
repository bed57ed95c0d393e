"""Whole-stack operations behind the CLI: up, down, status, restart, kill."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from devstack import fleet as fleet_mod
from devstack import infra as infra_mod
from devstack import kafka, oci, postgres, processes, supervise
from devstack.fleet import Fleet, Service
from devstack.paths import pids_dir, repo_root, venv_python

PROVISION_MODULE = "gpucloud_contracts.provision"
DEMO_TENANT = {"name": "Demo Tenant", "slug": "demo"}


class StackError(RuntimeError):
    pass


@dataclass
class Row:
    name: str
    pid: int | None
    url: str
    state: str


def provision_topics(bootstrap: str) -> str:
    """Create the Kafka topics the contracts declare, if the contracts package offers it."""
    try:
        found = importlib.util.find_spec(PROVISION_MODULE) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        return f"skipped: {PROVISION_MODULE} is not importable yet"
    result = subprocess.run(
        [str(venv_python()), "-m", PROVISION_MODULE, "--bootstrap", bootstrap],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise StackError(f"topic provisioning failed:\n{result.stdout}{result.stderr}")
    return "provisioned"


def _failure(proc: Service, why: str) -> str:
    log = supervise.log_file(proc.name)
    return (
        f"{proc.name} (python -m {proc.package}, {processes.url(proc)}) failed: {why}\n"
        f"--- last lines of {log} ---\n{supervise.tail(log)}\n"
    )


async def _start_processes(f: Fleet, infra: infra_mod.Infra) -> list[Row]:
    """Start every process that is not alive and healthy, then wait until each is ready."""
    procs = f.processes
    async with httpx.AsyncClient() as client:
        rows, pending = [], []
        for proc in procs:
            pid = supervise.running_pid(proc.name)
            if pid and (await processes.probe(client, proc)).ok:
                rows.append(Row(proc.name, pid, processes.url(proc), "running (kept)"))
                continue
            state = "running (was starting)" if pid else "running (started)"
            if not pid:
                pid = processes.start(proc, f, infra)
            rows.append(Row(proc.name, pid, processes.url(proc), state))
            pending.append(proc)
        results = await asyncio.gather(*(processes.wait_ready(client, p) for p in pending))
    failures = [_failure(p, h.detail) for p, h in zip(pending, results, strict=True) if not h.ok]
    if failures:
        raise StackError("\n".join(failures))
    return rows


async def _wait_until_ready(
    url: str,
    expected: set[str],
    ready_names: Callable[[Any], set[str]],
    what: str,
    *,
    headers: dict[str, str] | None = None,
    every: float = 0.5,
    within: float = 60.0,
) -> None:
    """Poll GET `url` until `ready_names(its JSON)` covers `expected`."""
    deadline = time.monotonic() + within
    last = "no answer"
    async with httpx.AsyncClient(headers=headers) as client:
        while time.monotonic() < deadline:
            try:
                resp = await client.get(url, timeout=3.0)
                ready = ready_names(resp.json()) if resp.status_code == 200 else set()
                if expected <= ready:
                    return
                last = f"HTTP {resp.status_code}; not ready: {sorted(expected - ready)}"
            except (httpx.HTTPError, ValueError, AttributeError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(every)
    raise StackError(f"GET {url} did not {what} in {within:.0f}s: {last}")


async def _wait_fleet_status(f: Fleet) -> None:
    """Poll the gateway's /v1/status until every service of the fleet is listed and ready."""
    await _wait_until_ready(
        f"{processes.url(f.gateway)}/v1/status",
        {s.name for s in f.services},
        lambda body: {s.get("name") for s in body.get("services", []) if s.get("ready") is True},
        "report every service ready",
    )


async def _wait_nodes_ready(f: Fleet) -> None:
    """Poll gpuaas (through the gateway, as an operator) until every node agent of the
    fleet has registered and is `ready`: `up` returns with capacity to place on."""
    from devstack import credentials

    token = credentials.password(credentials.OPERATOR_TOKEN)
    await _wait_until_ready(
        f"{processes.url(f.gateway)}/v1/gpu/nodes",
        {agent.name for agent in f.node_agents},
        lambda nodes: {n.get("name") for n in nodes if n.get("state") == "ready"},
        "list every node agent ready",
        headers={"Authorization": f"Bearer {token}"},
        every=0.2,
    )


def _create_demo_tenant(f: Fleet) -> str:
    resp = httpx.post(
        f"{processes.url(f.gateway)}/v1/iam/tenants",
        json=DEMO_TENANT,
        headers={"Idempotency-Key": "devstack-demo-tenant"},
        timeout=10.0,
    )
    if resp.status_code not in (200, 201, 409):
        raise StackError(
            f"creating the demo tenant failed: HTTP {resp.status_code} {resp.text[:500]}"
        )
    return {201: "created", 200: "exists", 409: "exists"}[resp.status_code]


def up(infra_only: bool = False, log=print) -> tuple[infra_mod.Infra, list[Row]]:
    started = time.monotonic()
    infra = infra_mod.ensure_infra()
    log(
        f"infra ready ({time.monotonic() - started:.1f}s): Kafka {infra.kafka_bootstrap}, "
        f"PostgreSQL 127.0.0.1:{infra.pg_port}"
    )
    if infra_only:
        return infra, []
    log(f"kafka topics: {provision_topics(infra.kafka_bootstrap)}")
    f = fleet_mod.load()
    with infra_mod.state_lock("up"):
        rows = asyncio.run(_start_processes(f, infra))
    log(f"processes ready ({time.monotonic() - started:.1f}s)")
    asyncio.run(_wait_fleet_status(f))
    log(f"gateway reports every service ready ({time.monotonic() - started:.1f}s)")
    asyncio.run(_wait_nodes_ready(f))
    log(f"gpuaas reports every node agent ready ({time.monotonic() - started:.1f}s)")
    log(f"demo tenant: {_create_demo_tenant(f)}")
    return infra, rows


def _tracked_names() -> list[str]:
    """Every process with a pid file, fleet order first (kafka excluded)."""
    names = [p.name for p in fleet_mod.load().processes]
    extra = sorted(p.stem for p in pids_dir().glob("*.pid"))
    return [n for n in dict.fromkeys([*names, *extra]) if n not in (kafka.NAME, oci.NAME)]


def down() -> dict[str, int | None]:
    stopped: dict[str, int | None] = dict(supervise.stop_many(_tracked_names()))
    stopped.update(infra_mod.stop_infra())
    return stopped


def status() -> list[Row]:
    f = fleet_mod.load()
    health = asyncio.run(processes.probe_all(f.processes))
    rows = []
    for proc in f.processes:
        pid = supervise.read_pid(proc.name)
        alive = supervise.alive(pid)
        h = health[proc.name]
        state = ("healthy" if h.ok else f"unhealthy (/readyz {h.detail})") if alive else "down"
        rows.append(Row(proc.name, pid if alive else None, processes.url(proc), state))
    kpid = supervise.running_pid(kafka.NAME)
    rows.append(
        Row(
            "kafka",
            kpid,
            f.kafka_bootstrap,
            "healthy" if kafka.ready(f.kafka_bootstrap) else ("starting" if kpid else "down"),
        )
    )
    opid = supervise.running_pid(oci.NAME)
    rows.append(
        Row(
            oci.NAME,
            opid,
            oci.url(f),
            "healthy" if oci.ready(f) else ("starting" if opid else "down"),
        )
    )
    ppid = postgres.running_pid()
    rows.append(
        Row(
            "postgres",
            ppid,
            f"127.0.0.1:{f.postgres_port}",
            "healthy" if postgres.ready(f) else ("starting" if ppid else "down"),
        )
    )
    return rows


def restart(name: str) -> Row:
    """Stop one process (SIGTERM, then SIGKILL) and start it again; waits until it is ready."""
    if name == kafka.NAME:
        kafka.stop()
        infra_mod.ensure_infra()
        return Row(name, supervise.running_pid(name), fleet_mod.load().kafka_bootstrap, "healthy")
    if name == postgres.NAME:
        postgres.stop()
        infra = infra_mod.ensure_infra()
        return Row(name, postgres.running_pid(), f"127.0.0.1:{infra.pg_port}", "healthy")
    if name == oci.NAME:
        oci.stop()
        infra_mod.ensure_infra()
        return Row(name, supervise.running_pid(name), oci.url(fleet_mod.load()), "healthy")
    f = fleet_mod.load()
    proc = f.find(name)
    infra = infra_mod.ensure_infra()
    supervise.stop_many([proc.name])
    pid = processes.start(proc, f, infra)

    async def wait() -> processes.Health:
        async with httpx.AsyncClient() as client:
            return await processes.wait_ready(client, proc)

    health = asyncio.run(wait())
    if not health.ok:
        raise StackError(_failure(proc, health.detail))
    return Row(proc.name, pid, processes.url(proc), "healthy")


def kill(name: str) -> int | None:
    """SIGKILL one process (chaos). PostgreSQL gets an immediate shutdown instead."""
    if name == postgres.NAME:
        pid = postgres.running_pid()
        if pid:
            postgres.stop(mode="immediate")
        return pid
    if name not in (kafka.NAME, oci.NAME):
        name = fleet_mod.load().find(name).name
    return supervise.kill(name)
