"""The fleet's own processes: every service, the gateway and the node agents, each run as
`<repo>/.venv/bin/python -m <package>` detached, with its environment derived from
deploy/fleet.toml and the running infra.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from dataclasses import dataclass
from functools import cache

import httpx

from devstack import credentials, kafka, oci, supervise
from devstack.fleet import Fleet, Service
from devstack.infra import Infra
from devstack.paths import repo_root, state_dir, venv_python

HOST = "127.0.0.1"


def url(proc: Service) -> str:
    return f"http://{HOST}:{proc.port}"


@cache
def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo_root(),
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def environment(proc: Service, fleet: Fleet, infra: Infra) -> dict[str, str]:
    """The process's environment: ours plus the GPUCLOUD_* settings it reads."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GPUCLOUD_KAFKA_")},
        "PYTHONUNBUFFERED": "1",
        "GPUCLOUD_SERVICE_NAME": proc.name,
        "GPUCLOUD_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "GPUCLOUD_HTTP_HOST": HOST,
        "GPUCLOUD_HTTP_PORT": str(proc.port),
        "GPUCLOUD_GIT_SHA": git_sha(),
        "GPUCLOUD_LOG_FORMAT": "json",
        # Operator routes (audit log, tenant listing) until iam's tokens replace it.
        "GPUCLOUD_OPERATOR_TOKEN": credentials.password(credentials.OPERATOR_TOKEN),
    }
    # Derived from the (possibly offset) gateway port; equal to the kit's default otherwise.
    env.setdefault("GPUCLOUD_TOKEN_ISSUER", f"{url(fleet.gateway)}/v1/iam")
    iam = next((s for s in fleet.services if s.name == "iam"), None)
    if iam is not None:
        # Every service verifies iam's access tokens against its published keys.
        env["GPUCLOUD_JWKS_URL"] = f"{url(iam)}/v1/iam/.well-known/jwks.json"
    if proc == iam:
        env["GPUCLOUD_IAM_KEY_PASSPHRASE"] = credentials.password("iam_key_passphrase")
        # Verification and invitation mail goes to the local sink (devstack/mail.py); its
        # links point at the portal, through the gateway.
        env["GPUCLOUD_SMTP_HOST"] = "127.0.0.1"
        env["GPUCLOUD_SMTP_PORT"] = str(fleet.mail_sink_port)
        env.setdefault("GPUCLOUD_PUBLIC_URL", url(fleet.gateway))
    if proc.name == "registry" and infra.oci_registry is not None:
        env["GPUCLOUD_REGISTRY_OCI_URL"] = infra.oci_registry.url
        env["GPUCLOUD_REGISTRY_OCI_USERNAME"] = infra.oci_registry.username
        env["GPUCLOUD_REGISTRY_OCI_PASSWORD"] = infra.oci_registry.password
    if proc.name == "audit":
        # the local status page (GET /v1/status) shows readiness without a token
        env["GPUCLOUD_AUDIT_STATUS_PUBLIC"] = "true"
    if proc.name == "billing":
        # the demo tenant's balance is sandbox money: chosen explicitly (billing refuses to
        # start without a provider, and takes the sandbox only when told)
        env["GPUCLOUD_BILLING_PAYMENT_PROVIDER"] = "sandbox"
        env["GPUCLOUD_BILLING_SANDBOX_PAYMENTS"] = "true"
        env["GPUCLOUD_BILLING_SANDBOX_SECRET"] = credentials.password("billing_sandbox_secret")
    if proc in fleet.services:
        # its own Kafka principal: the ACLs let it write its families' topics only
        env.update(kafka.client_env(fleet, proc.name))
    for name in ("GPUCLOUD_DATABASE_URL", "GPUCLOUD_DATABASE_OWNER_URL"):
        env.pop(name, None)
    if proc.database:
        # migrations at start as the owner, then serving as the runtime role
        env["GPUCLOUD_DATABASE_OWNER_URL"] = infra.owner_url(proc.package)
        env["GPUCLOUD_DATABASE_URL"] = infra.runtime_url(proc.package)
    if proc.name == "appplatform":
        # seals its app-proxy signing keys at rest (docs/appplatform.md, Connect)
        env["GPUCLOUD_APPS_KEY_PASSPHRASE"] = credentials.password("apps_key_passphrase")
    terminal = next((s for s in fleet.services if s.name == "terminal-gateway"), None)
    if proc == terminal:
        # Browsers reach the terminal through the gateway; `ssh` reaches it directly.
        env["GPUCLOUD_TERMINAL_PUBLIC_URL"] = f"ws://{HOST}:{fleet.gateway.port}"
        env["GPUCLOUD_TERMINAL_KEY_PASSPHRASE"] = credentials.password("terminal_key_passphrase")
        if proc.ssh_port:
            env["GPUCLOUD_TERMINAL_SSH_PORT"] = str(proc.ssh_port)
    if proc == fleet.gateway:
        env["GPUCLOUD_UPSTREAMS"] = ",".join(
            f"{s.route}={url(s)}" for s in fleet.services if s.route
        )
        if fleet.portal is not None:
            env["GPUCLOUD_PORTAL_URL"] = url(fleet.portal)
    if proc == fleet.portal:
        env["GPUCLOUD_GATEWAY_URL"] = url(fleet.gateway)
        # Sessions survive a restart of the portal (the cookie is sealed with this key).
        env["GPUCLOUD_PORTAL_SESSION_KEYS"] = credentials.password("portal_session_key")
    if proc in fleet.node_agents:
        gpuaas = next((s for s in fleet.services if s.name == "gpuaas"), None)
        env["GPUCLOUD_NODE_NAME"] = proc.name
        # The agent's local state belongs to this stack (an isolated stack has its own home).
        env.setdefault("GPUCLOUD_NODE_STATE_DIR", str(state_dir() / "node-agent"))
        env["GPUCLOUD_GPUAAS_URL"] = url(gpuaas) if gpuaas else f"http://{HOST}:8104"
        if infra.oci_registry is not None:
            # The agent pulls a launch's bundle from the OCI registry into its pull cache
            # (an OCI layout per manifest digest), then verifies bytes and signatures.
            env["GPUCLOUD_NODE_BUNDLE_DIR"] = str(
                state_dir() / "node-agent" / f"bundles-{proc.name}"
            )
            env["GPUCLOUD_NODE_OCI_URL"] = infra.oci_registry.url
            env["GPUCLOUD_NODE_OCI_USERNAME"] = oci.NODE_USERNAME
            env["GPUCLOUD_NODE_OCI_PASSWORD"] = credentials.password(oci.NODE_PASSWORD_KEY)
        if terminal is not None:
            # The agent verifies session tokens against terminal-gateway's keys.
            env["GPUCLOUD_TERMINAL_JWKS_URL"] = f"{url(terminal)}/v1/terminal/.well-known/jwks.json"
        apps = next((s for s in fleet.services if s.name == "appplatform"), None)
        if apps is not None:
            # The agent verifies appplatform's X-App-Proxy tokens (connect URLs, logs).
            env["GPUCLOUD_APPS_JWKS_URL"] = f"{url(apps)}/v1/apps/.well-known/jwks.json"
    return env


def start(proc: Service, fleet: Fleet, infra: Infra) -> int:
    return supervise.spawn(
        proc.name,
        [str(venv_python()), "-m", proc.package],
        env=environment(proc, fleet, infra),
        cwd=repo_root(),
    )


@dataclass
class Health:
    ok: bool
    detail: str


async def probe(client: httpx.AsyncClient, proc: Service) -> Health:
    """One GET /readyz."""
    try:
        resp = await client.get(f"{url(proc)}/readyz", timeout=2.0)
    except httpx.HTTPError as exc:
        return Health(False, type(exc).__name__)
    return Health(resp.status_code == 200, str(resp.status_code))


async def wait_ready(client: httpx.AsyncClient, proc: Service, within: float = 60.0) -> Health:
    """Poll /readyz until 200, the process exits, or timeout."""
    deadline = time.monotonic() + within
    health = Health(False, "not polled")
    while time.monotonic() < deadline:
        health = await probe(client, proc)
        if health.ok:
            return health
        if not supervise.running_pid(proc.name):
            return Health(False, f"process exited (last /readyz: {health.detail})")
        await asyncio.sleep(0.3)
    return Health(False, f"not ready after {within:.0f}s (last /readyz: {health.detail})")


async def probe_all(procs: tuple[Service, ...]) -> dict[str, Health]:
    async with httpx.AsyncClient() as client:
        results = await asyncio.gather(*(probe(client, p) for p in procs))
    return {p.name: h for p, h in zip(procs, results, strict=True)}
