"""terminal-gateway as it runs in the fleet, on real Kafka and PostgreSQL, with a real node
agent and PTY, all in this process on real sockets:

- terminal-gateway: its app over uvicorn (HTTP, the connect WebSocket, its JWKS), its
  consumers on the real topics, its relay, sweeper, watch and SSH endpoint;
- a node agent: its app over uvicorn, verifying session tokens against terminal-gateway's
  JWKS over HTTP, running one allocation as its own unprivileged user;
- iam and gpuaas are played by their events: the test publishes `gpuaas.node.*`,
  `gpuaas.allocation.*`, `iam.tenant.*`, `iam.membership.*` and `iam.ssh-key.*` records
  (contract payloads, CloudEvents envelopes) the way those services' relays do, and signs
  access tokens with a key whose JWKS it serves (as iam's).
One stack serves the whole module; every test uses its own users and sessions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import msgspec
import psycopg
import pyte
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from litestar import Litestar
from websockets.asyncio.client import ClientConnection

from gpucloud_contracts.events.gpuaas import AllocationChanged, NodeChanged
from gpucloud_contracts.events.iam import (
    MembershipGranted,
    MembershipRevoked,
    SshKeyAdded,
    TenantCreated,
    TenantSuspended,
)
from gpucloud_contracts.node_sync import DesiredAllocation, InstanceOut
from gpucloud_terminal import protocol
from node_agent.bootstrap import DEFINITION as AGENT_DEFINITION
from node_agent.isolation import WorkloadAccounts, harden_agent
from node_agent.reconcile import Reconciler
from node_agent.session_tokens import SessionTokenVerifier
from node_agent.terminal import TerminalService
from node_agent.terminal import TerminalSettings as AgentTerminalSettings
from platformkit.envelope import new_event
from platformkit.http import build_service_app
from platformkit.service import migrate
from platformkit.settings import DEFAULT_TOKEN_AUDIENCE, DEFAULT_TOKEN_ISSUER, ServiceSettings
from terminal_gateway.app.sessions import SessionService
from terminal_gateway.bootstrap import definition
from terminal_gateway.settings import TerminalSettings

NODE = "node-tg-test"
# The services whose events the tests play (consumers check the source against the topic).
SOURCES = {"gpuaas": "gpuaas", "iam": "iam"}
OPERATOR_TOKEN = "operator-" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Iam:
    """iam's part: its signing key (served as JWKS) and the access tokens it would mint."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.kid = uuid.uuid4().hex

    def jwks(self) -> dict[str, Any]:
        public = json.loads(OKPAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "alg": "EdDSA", "use": "sig"}]}

    def token(
        self, user: uuid.UUID, tenant: uuid.UUID, roles=("member",), proj=None, mfa=False,
        **overrides: Any,
    ) -> str:  # fmt: skip
        now = int(time.time())
        claims = {
            "iss": DEFAULT_TOKEN_ISSUER, "aud": DEFAULT_TOKEN_AUDIENCE, "sub": str(user),
            "kind": "user", "tenant": str(tenant), "roles": list(roles),
            "proj": {str(p): list(r) for p, r in (proj or {}).items()},
            "amr": ["pwd", "otp"] if mfa else ["pwd"], "auth_time": now, "iat": now,
            "nbf": now, "exp": now + 300, "jti": uuid.uuid4().hex,
        }  # fmt: skip
        claims.update(overrides)
        return jwt.encode(
            claims, self.key, algorithm="EdDSA", headers={"kid": self.kid, "typ": "at+jwt"}
        )


def serve_json(document_of) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(document_of()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/jwks.json"


async def serve(app: Litestar) -> tuple[uvicorn.Server, asyncio.Task[None], socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
        await asyncio.sleep(0.01)
    return server, task, sock


@dataclasses.dataclass
class Tenant:
    id: uuid.UUID
    project_id: uuid.UUID
    allocation_id: uuid.UUID


@dataclasses.dataclass
class Stack:
    base: str  # terminal-gateway's HTTP base
    ws: str
    database: str  # the owner's URL (the test's own SQL)
    runtime_database: str  # the runtime role's, which terminal-gateway serves with
    ssh_port: int
    node_id: uuid.UUID
    agent_url: str
    iam: Iam
    producer: Any
    service: SessionService
    reconciler: Reconciler
    agent_terminal: TerminalService

    async def publish(
        self, topic: str, type_: str, subject: uuid.UUID, payload: Any, tenant=None
    ) -> str:
        """Publish one event; returns its id (the inbox row it leaves once applied)."""
        event = new_event(
            type=type_, source=SOURCES[topic.split(".", 1)[0]], subject=str(subject),
            payload=msgspec.json.encode(payload), tenant=str(tenant) if tenant else None,
        )  # fmt: skip
        await self.producer.send_and_wait(
            topic, value=event.data, key=event.key, headers=event.headers()
        )
        return str(event.id)

    async def allocation(
        self, tenant: uuid.UUID, project: uuid.UUID, allocation: uuid.UUID, state="running"
    ) -> None:
        await self.publish(
            "gpuaas.allocation.v1", f"gpuaas.allocation.{state}", allocation,
            AllocationChanged(
                allocation_id=allocation, tenant_id=tenant, project_id=project, state=state,
                sku="h100-80gb", quantity=1, node_id=self.node_id,
                occurred_at=dt.datetime.now(dt.UTC),
            ),
            tenant,
        )  # fmt: skip

    async def membership(self, tenant, user, role, membership=None, project=None, revoked=False):
        membership = membership or uuid.uuid4()
        at = dt.datetime.now(dt.UTC)
        if revoked:
            payload: Any = MembershipRevoked(
                membership_id=membership, tenant_id=tenant, principal_id=user,
                principal_kind="user", role=role, project_id=project, revoked_at=at,
            )  # fmt: skip
        else:
            payload = MembershipGranted(
                membership_id=membership, tenant_id=tenant, principal_id=user,
                principal_kind="user", role=role, project_id=project, granted_at=at,
            )  # fmt: skip
        kind = "revoked" if revoked else "granted"
        await self.publish("iam.membership.v1", f"iam.membership.{kind}", tenant, payload, tenant)
        return membership

    async def suspend(self, tenant: uuid.UUID) -> None:
        await self.publish(
            "iam.tenant.v1", "iam.tenant.suspended", tenant,
            TenantSuspended(tenant_id=tenant, reason="test", suspended_at=dt.datetime.now(dt.UTC)),
            tenant,
        )  # fmt: skip

    async def ssh_key(self, user: uuid.UUID, public_key: str, fingerprint: str) -> None:
        await self.publish(
            "iam.ssh-key.v1", "iam.ssh-key.added", user,
            SshKeyAdded(
                key_id=uuid.uuid4(), user_id=user, algorithm="ssh-ed25519", bits=256,
                fingerprint=fingerprint, public_key=public_key, added_at=dt.datetime.now(dt.UTC),
            ),
        )  # fmt: skip

    def sql(self, query: str, *params: Any) -> list[tuple]:
        with psycopg.connect(self.database, autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    async def until(self, condition, within: float = 15.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            value = await asyncio.to_thread(condition)
            if value:
                return value
            await asyncio.sleep(0.05)
        raise AssertionError(f"{what} not met within {within} s")

    async def tenant(self) -> Tenant:
        """A tenant with a project and a running allocation on the node, projected."""
        tenant, project, allocation = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        current = self._desired()
        self.reconciler.reconcile([*current, _desired(allocation, start=len(current))])
        await self.publish(
            "iam.tenant.v1", "iam.tenant.created", tenant,
            TenantCreated(tenant_id=tenant, name="T", slug=f"t-{tenant.hex[:10]}", status="active",
                          created_at=dt.datetime.now(dt.UTC)),
            tenant,
        )  # fmt: skip
        await self.allocation(tenant, project, allocation)
        await self.until(
            lambda: self.sql(
                "SELECT 1 FROM allocations WHERE id = %s AND state = 'running'", allocation
            ),
            what="the allocation projected",
            within=60,
        )
        # The tenant too: this module's consumers start at the topics' beginning and read
        # the fleet's own events first; once the tenant's created event is applied, its
        # partition's backlog is behind, so a later suspension is timed alone.
        await self.until(
            lambda: self.sql("SELECT 1 FROM tenants WHERE id = %s", tenant),
            what="the tenant projected",
            within=60,
        )
        return Tenant(tenant, project, allocation)

    def _desired(self) -> list[DesiredAllocation]:
        return [_desired(uuid.UUID(a), start=i) for i, a in enumerate(self.reconciler.workloads)]

    def release_on_node(self, allocation: uuid.UUID) -> None:
        self.reconciler.reconcile([d for d in self._desired() if d.id != allocation])

    async def open(
        self, token: str, tenant: Tenant, *, forwarded_for: str = "203.0.113.7"
    ) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base, timeout=10) as client:
            return await client.post(
                "/v1/terminal/sessions",
                json={"allocation_id": str(tenant.allocation_id)},
                headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": forwarded_for},
            )

    async def call(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(base_url=self.base, timeout=10) as client:
            return await client.request(method, path, headers=headers, **kwargs)


def _desired(allocation: uuid.UUID, start: int) -> DesiredAllocation:
    """An allocation as gpuaas's sync answers it: a 1g.10gb slice of the node's one GPU."""
    instance = InstanceOut(
        gpu_index=0, device_uuid="GPU-tg", start=start, memory_slices=1, compute_slices=1,
        profile_id=19,
    )  # fmt: skip
    return DesiredAllocation(
        id=allocation, sku="h100-80gb", mig_profile="1g.10gb", state="running",
        instances=[instance],
    )  # fmt: skip


class Screen:
    """The user's terminal: pyte fed with the output, and the control messages seen."""

    def __init__(self, cols: int = 200, rows: int = 50) -> None:
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.controls: list[protocol.Control] = []

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def feed(self, frame: bytes | str) -> None:
        if isinstance(frame, bytes):
            self.stream.feed(frame)
        else:
            self.controls.append(protocol.decode(frame))

    async def until(self, ws: ClientConnection, needle: str, within: float = 10) -> None:
        try:
            async with asyncio.timeout(within):
                while needle not in self.text():
                    self.feed(await ws.recv())
        except TimeoutError:
            raise AssertionError(f"{needle!r} never appeared:\n{self.text()}") from None

    async def control(
        self, ws: ClientConnection, kind: str, within: float = 10
    ) -> protocol.Control:
        async with asyncio.timeout(within):
            while True:
                for c in self.controls:
                    if c.type == kind:
                        return c
                self.feed(await ws.recv())


@pytest.fixture(scope="module")
async def stack(infra, make_database_roles, tmp_path_factory) -> AsyncIterator[Stack]:
    """terminal-gateway migrated by its owner role and serving as its runtime role, as in
    the fleet; the test's own SQL (`Stack.sql`) runs as the owner."""
    from platformkit.kafka import producer as kafka_producer
    from platformkit.provision import provision

    await provision(infra.kafka, acls=False, report=lambda _: None)
    roles_context = make_database_roles()
    roles = roles_context.__enter__()
    database = roles.owner_url
    iam = Iam()
    jwks_server, jwks_url = serve_json(iam.jwks)
    producer = kafka_producer(infra.kafka, "tg-tests")
    await producer.start()
    tmp = tmp_path_factory.mktemp("tg")
    umask = os.umask(0o022)
    os.umask(umask)
    servers = []
    try:
        ssh_port = free_port()
        tg_port_holder: dict[str, int] = {}
        settings = TerminalSettings(
            public_url="ws://127.0.0.1:1",  # replaced once the port is known
            grace_s=30, idle_timeout_s=0, relay_lease_s=3, sweep_interval_s=0.2,
            ssh_port=ssh_port,
        )  # fmt: skip
        service = SessionService(settings)
        tg_definition = definition(service)
        kit = ServiceSettings(
            service_name=f"terminal-gateway-test-{uuid.uuid4().hex[:8]}",
            database_url=roles.runtime_url, database_owner_url=roles.owner_url,
            kafka=infra.kafka, jwks_url=jwks_url, operator_token=OPERATOR_TOKEN,
            heartbeat_interval_s=0, outbox_poll_interval_s=0.5,
        )  # fmt: skip
        migrate(tg_definition, kit)
        tg = await serve(build_service_app(tg_definition, kit))
        servers.append(tg)
        tg_port_holder["port"] = tg[2].getsockname()[1]
        base = f"http://127.0.0.1:{tg_port_holder['port']}"
        service.settings = dataclasses.replace(
            settings, public_url=f"ws://127.0.0.1:{tg_port_holder['port']}"
        )

        state = tmp / "agent"
        harden_agent(state)
        accounts = WorkloadAccounts(
            owner=f"tg-test-{uuid.uuid4()}", workspace_root=state / "workspaces",
            lease_dir=tmp / "leases", first_uid=5_000_000,
        )  # fmt: skip
        reconciler = Reconciler(state / "state.json", "exec sleep 600", accounts=accounts)
        tg_jwks = f"{base}/v1/terminal/.well-known/jwks.json"
        agent_terminal = TerminalService(
            AgentTerminalSettings(jwks_url=tg_jwks, shell_path="/bin/bash", default_grace_s=30),
            SessionTokenVerifier.from_jwks_url(tg_jwks, node_name=NODE),
            reconciler,
            state / "unused",
        )

        async def install(app: Litestar) -> None:
            app.state.terminal = agent_terminal

        agent_app = build_service_app(
            dataclasses.replace(AGENT_DEFINITION, on_startup=[install], on_shutdown=(), jobs=()),
            ServiceSettings(service_name=f"agent-{NODE}"),
        )
        agent = await serve(agent_app)
        servers.append(agent)
        agent_url = f"http://127.0.0.1:{agent[2].getsockname()[1]}"
        node_id = uuid.uuid4()
        result = Stack(
            base=base, ws=service.settings.public_url, database=database,
            runtime_database=roles.runtime_url, ssh_port=ssh_port,
            node_id=node_id, agent_url=agent_url, iam=iam, producer=producer, service=service,
            reconciler=reconciler, agent_terminal=agent_terminal,
        )  # fmt: skip
        await result.publish(
            "gpuaas.node.v1", "gpuaas.node.registered", node_id,
            NodeChanged(node_id=node_id, name=NODE, provider="static", state="ready", gpu_count=1,
                        agent_url=agent_url, occurred_at=dt.datetime.now(dt.UTC)),
        )  # fmt: skip
        await result.until(
            lambda: result.sql("SELECT 1 FROM nodes WHERE id = %s", node_id), what="the node"
        )
        memberships = tg[0].config.app.state.runtime.memberships
        await result.until(lambda: memberships.ready, what="the membership projection")
        yield result
    finally:
        for server, task, sock in reversed(servers):
            server.should_exit = True
            await task
            sock.close()
        if "reconciler" in locals():
            reconciler.reconcile([])
        os.umask(umask)
        await producer.stop()
        jwks_server.shutdown()
        roles_context.__exit__(None, None, None)


def events_of(stack: Stack, session_id: str) -> list[tuple[str, dict]]:
    rows = stack.sql(
        "SELECT type, convert_from(payload, 'UTF8') FROM outbox WHERE topic = 'terminal.session.v1'"
        " AND subject = %s ORDER BY seq",
        session_id,
    )
    return [(t, json.loads(p)) for t, p in rows]


def path_of(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[1]
