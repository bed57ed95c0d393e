"""Whole-stack operations behind the CLI: up, down, status, restart, kill."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from devstack import fleet as fleet_mod
from devstack import infra as infra_mod
from devstack import kafka, mail, oci, postgres, processes, supervise
from devstack.fleet import Fleet, Service
from devstack.paths import pids_dir


class StackError(RuntimeError):
    pass


@dataclass
class Row:
    name: str
    pid: int | None
    url: str
    state: str


def provision_kafka(f: Fleet) -> str:
    """The contract topics and the ACL table, as the admin principal (idempotent)."""
    report = infra_mod.provision_kafka(f)
    summary = [line for line in report.splitlines() if line.startswith(("topics:", "acls:"))]
    return "; ".join(summary) or "provisioned"


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


@dataclass(frozen=True)
class Demo:
    email: str
    password: str
    tenant_slug: str
    state: str  # what happened, for the log line


DEMO_EMAIL = "demo@example.com"
DEMO_TOP_UP_MICROS = 100_000_000  # 100.00 USD of sandbox credit


def _demo_sign_in(client: httpx.Client, password: str) -> httpx.Response:
    return client.post(
        "/v1/iam/token",
        data={"grant_type": "password", "username": DEMO_EMAIL, "password": password},
    )


def _demo_sign_up(client: httpx.Client, password: str) -> tuple[str, str]:
    """iam's sign-up, verified the way a person does it: the link mailed to the demo
    address, read from the local mail sink. The tenant id and slug."""
    for slug in ("demo", "demo-portal"):
        seen = len([m for m in mail.messages(to=DEMO_EMAIL) if m.token])
        body = {"tenant_name": "Demo Tenant", "slug": slug, "email": DEMO_EMAIL}
        resp = client.post("/v1/iam/signup", json=body | {"password": password})
        if resp.status_code == 409:
            continue
        if resp.status_code != 202:
            raise StackError(
                f"signing up the demo user failed: HTTP {resp.status_code} {resp.text[:500]}"
            )
        token = mail.wait_for_token(DEMO_EMAIL, "gcv_", after=seen)
        verified = client.post("/v1/iam/verify", json={"token": token})
        if verified.status_code == 409:
            continue
        if verified.status_code != 201:
            raise StackError(
                f"verifying the demo user failed: HTTP {verified.status_code} {verified.text[:500]}"
            )
        return verified.json()["tenant"]["id"], slug
    raise StackError("the demo slugs 'demo' and 'demo-portal' are both taken")


def seed_demo(f: Fleet) -> Demo:
    """The demo tenant and its owner, a person who can sign in to the portal and launch at
    once: iam's public sign-up, verified by the link iam mails to the local sink (tenant +
    owner + default project are created by the verification, in one transaction), then a
    sandbox payment (billing's provider settles it by its signed webhook, fixed
    Idempotency-Key). A second `up` finds the user signs in and changes nothing. The
    password is generated once and kept in .state/secrets.json.

    A state made before the portal existed holds a bare tenant `demo` (no owner): the
    sign-up then uses the slug `demo-portal` instead."""
    from devstack import credentials

    gateway = processes.url(f.gateway)
    password = credentials.password("demo_user_password")
    state = "created"
    with httpx.Client(base_url=gateway, timeout=10.0) as client:
        token = _demo_sign_in(client, password)
        if token.status_code == 400 and "mfa" in token.text:
            # The demo user enrolled a second factor in the portal: the balance is theirs now.
            return Demo(DEMO_EMAIL, password, "demo", "exists (signed in with a second factor)")
        if token.status_code == 200:
            state = "exists"
        else:
            _demo_sign_up(client, password)
            token = _demo_sign_in(client, password)
            if token.status_code != 200:
                raise StackError(
                    f"the demo user cannot sign in: HTTP {token.status_code} {token.text[:300]}"
                )
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        me = client.get("/v1/iam/me", headers=auth).json()
        tenant_id = me["tenant_id"]
        slug = client.get(f"/v1/iam/tenants/{tenant_id}", headers=auth).json()["slug"]
        deadline = time.monotonic() + 30.0
        while True:  # billing opens the tenant from iam's event: wait for it
            paid = client.post(
                f"/v1/billing/tenants/{tenant_id}/payments",
                json={"amount_micros": DEMO_TOP_UP_MICROS},
                headers=auth | {"Idempotency-Key": f"devstack-demo-top-up-{tenant_id}"},
            )
            if paid.status_code in (200, 201) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        if paid.status_code not in (200, 201):
            state = (
                f"{state}, but the sandbox top-up failed: HTTP {paid.status_code} {paid.text[:300]}"
            )
    return Demo(DEMO_EMAIL, password, slug, state)


def record_readiness(f: Fleet) -> tuple[str | None, str]:
    """Readiness evidence of this deploy (issue 15 item 5): which version and git SHA of every
    service passed its readiness, one audit evidence record (kind `readiness`, platform
    tenant) whose subject is the digest of that version map, so "which build is running and
    did its checks pass" has one readback: GET /v1/audit/evidence?subject=<digest>."""
    from devstack import credentials

    headers = {"Authorization": f"Bearer {credentials.load()[credentials.OPERATOR_TOKEN]}"}
    with httpx.Client(base_url=processes.url(f.gateway), timeout=10.0) as client:
        status = client.get("/v1/audit/status", headers=headers)
        if status.status_code != 200:
            return None, f"not recorded: status HTTP {status.status_code}"
        services = {
            s["name"]: {"version": s["version"], "git_sha": s["git_sha"], "ready": s["ready"]}
            for s in status.json()["services"]
        }
        versions = json.dumps(services, sort_keys=True, separators=(",", ":")).encode()
        digest = "sha256:" + hashlib.sha256(versions).hexdigest()
        all_ready = all(s["ready"] for s in services.values())
        made = client.post(
            "/v1/audit/evidence",
            json={
                "kind": "readiness",
                "subject_digest": digest,
                "outcome": "pass" if all_ready else "fail",
                "details": {"deploy": "devstack", "services": services},
            },
            headers=headers | {"Idempotency-Key": f"devstack-readiness-{all_ready}-{digest}"},
        )
    if made.status_code != 201:
        return None, f"not recorded: HTTP {made.status_code} {made.text[:200]}"
    return digest, f"{len(services)} services, subject {digest[:19]}..."


def up(infra_only: bool = False, log=print) -> tuple[infra_mod.Infra, list[Row]]:
    started = time.monotonic()
    infra = infra_mod.ensure_infra()
    log(
        f"infra ready ({time.monotonic() - started:.1f}s): Kafka {infra.kafka_bootstrap}, "
        f"PostgreSQL 127.0.0.1:{infra.pg_port}"
    )
    if infra_only:
        return infra, []
    f = fleet_mod.load()
    log(f"kafka: {provision_kafka(f)}")
    with infra_mod.state_lock("up"):
        rows = asyncio.run(_start_processes(f, infra))
    log(f"processes ready ({time.monotonic() - started:.1f}s)")
    asyncio.run(_wait_fleet_status(f))
    log(f"gateway reports every service ready ({time.monotonic() - started:.1f}s)")
    log(f"readiness evidence: {record_readiness(f)[1]}")
    asyncio.run(_wait_nodes_ready(f))
    log(f"gpuaas reports every node agent ready ({time.monotonic() - started:.1f}s)")
    demo = seed_demo(f)
    log(f"demo tenant '{demo.tenant_slug}' and user {demo.email}: {demo.state}")
    return infra, rows


def _tracked_names() -> list[str]:
    """Every process with a pid file, fleet order first (kafka excluded)."""
    names = [p.name for p in fleet_mod.load().processes]
    extra = sorted(p.stem for p in pids_dir().glob("*.pid"))
    return [
        n for n in dict.fromkeys([*names, *extra]) if n not in (kafka.NAME, oci.NAME, mail.NAME)
    ]


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
    if name not in (kafka.NAME, oci.NAME, mail.NAME):
        name = fleet_mod.load().find(name).name
    return supervise.kill(name)
