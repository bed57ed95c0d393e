"""Connect: an exposed http port of an instance through appplatform's proxy to the replica's
node agent (played here by a small app on a real socket, in its own thread, that verifies
the app-proxy token against the JWKS appplatform publishes, as the agent does), and the
instance's logs. Refusals first."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from litestar import Litestar, Request, Response, get, route
from litestar.response import Stream

from gpucloud_contracts.events.gpuaas import NodeChanged
from platformkit.tokens import AccessTokenVerifier, CallableJwks, InvalidToken, JwksCache

from .conftest import Release, Stack, manifest, token

pytestmark = pytest.mark.integration
NODE = f"node-{uuid.uuid4().hex[:6]}"


class Agent:
    """The node agent's side of the port proxy and logs, for the test."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        async def fetch() -> dict[str, Any]:
            return jwks

        self.verifier = AccessTokenVerifier(
            JwksCache(CallableJwks(fetch), min_refresh_interval_s=0.1),
            issuer="appplatform", audience=f"node:{NODE}", token_types=("app-proxy+jwt",),
        )  # fmt: skip
        self.seen: list[dict[str, Any]] = []

    async def check(self, request: Request) -> dict[str, Any] | Response:
        try:
            return await self.verifier.claims(request.headers.get("x-app-proxy", ""))
        except InvalidToken as exc:
            return Response({"refused": str(exc)}, status_code=401)

    def app(self) -> Litestar:
        agent = self

        @route(
            ["/v1/workloads/{allocation:str}/ports/{port:int}",
             "/v1/workloads/{allocation:str}/ports/{port:int}/{path:path}"],
            http_method=["GET", "POST"],
        )  # fmt: skip
        async def port(request: Request, allocation: str, port: int, path: str = "/") -> Any:
            claims = await agent.check(request)
            if isinstance(claims, Response):
                return claims
            seen = {
                "allocation": allocation, "port": port, "path": path, "claims": claims,
                "query": dict(request.query_params), "method": request.method,
                "body": (await request.body()).decode(), "headers": dict(request.headers),
            }  # fmt: skip
            agent.seen.append(seen)
            return Response({"echo": path, "query": seen["query"], "body": seen["body"]},
                            headers={"X-From-App": "yes"}, status_code=200)  # fmt: skip

        @get("/v1/workloads/{allocation:str}/logs")
        async def logs(request: Request, allocation: str) -> Any:
            claims = await agent.check(request)
            if isinstance(claims, Response):
                return claims
            agent.seen.append({"logs": allocation, "claims": claims,
                               "query": dict(request.query_params)})  # fmt: skip

            async def lines() -> AsyncIterator[bytes]:
                for n in range(3):
                    yield f"line {n}\n".encode()

            return Stream(lines(), media_type="text/plain")

        return Litestar([port, logs])


@pytest.fixture(scope="module")
async def agent(stack: Stack) -> AsyncIterator[tuple[Agent, str]]:
    published = await stack.client.get("/v1/apps/.well-known/jwks.json")
    fake = Agent(published.json())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(fake.app(), log_config=None, lifespan="on"))
    # its own thread and loop: the test client runs appplatform's app synchronously
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
        await asyncio.sleep(0.01)
    yield fake, f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
async def running(stack: Stack, agent) -> dict[str, Any]:
    """An instance with one replica, running on the node (not ready yet)."""
    _, url = agent
    tenant, project = await stack.tenant()
    app = f"app-{uuid.uuid4().hex[:8]}"
    data = manifest(app, "1.0.0", ports=[
        {"name": "http", "port": 8000, "expose": True},
        {"name": "admin", "port": 9000},
    ])  # fmt: skip
    await stack.release(Release(tenant, app, "1.0.0", data, project=project), 2, ["stable"])
    node = uuid.uuid4()
    registered = await stack.publish(
        "gpuaas.node.v1",
        "gpuaas.node.ready",
        node,
        NodeChanged(
            node_id=node,
            name=NODE,
            provider="static",
            state="ready",
            gpu_count=1,
            agent_url=url,
            sku="h100-80gb",
            occurred_at=dt.datetime.now(dt.UTC),
        ),
    )
    await stack.consumed(registered)
    await stack.until(lambda: stack.sql("SELECT 1 FROM releases WHERE app = %s", app))
    base = f"/v1/apps/tenants/{tenant}/projects/{project}"
    created = await stack.client.post(
        f"{base}/apps/{app}/instances", json={"name": "web", "env": {"API_KEY": "k"}},
        headers=token(tenant, "member"),
    )  # fmt: skip
    assert created.status_code == 201, created.text
    instance = created.json()["id"]
    [request] = stack.commands(instance, "appplatform.replica.requested")
    replica = (request["replica_id"], instance)
    allocation = uuid.uuid4()
    scope = {"tenant": tenant, "project": project, "allocation": allocation, "node": node}
    await stack.consumed(await stack.allocation(replica, "running", **scope))
    return {"tenant": tenant, "project": project, "instance": instance, "base": base,
            "replica": replica, "scope": scope, "allocation": allocation}  # fmt: skip


def port_path(ctx, port: int = 8000, rest: str = "") -> str:
    return f"/v1/apps/instances/{ctx['instance']}/ports/{port}{rest}"


async def test_the_jwks_is_public(stack: Stack) -> None:
    response = await stack.client.get("/v1/apps/.well-known/jwks.json")
    assert response.status_code == 200
    [key] = response.json()["keys"]
    assert key["kty"] == "OKP" and key["alg"] == "EdDSA" and key["kid"]


async def test_refusals_come_before_any_proxying(stack: Stack, agent, running) -> None:
    fake, _ = agent
    before = len(fake.seen)
    assert (await stack.client.get(port_path(running, rest="/x"))).status_code == 401
    other, _ = await stack.tenant()
    stranger = token(other, "owner")
    assert (await stack.client.get(port_path(running), headers=stranger)).status_code == 404
    member = token(running["tenant"], "member")
    unknown = f"/v1/apps/instances/{uuid.uuid4()}/ports/8000/"
    assert (await stack.client.get(unknown, headers=member)).status_code == 404
    # a declared port that is not exposed, and one not declared at all
    for port in (9000, 1234):
        assert (await stack.client.get(port_path(running, port), headers=member)).status_code == 404
    logs = f"{running['base']}/instances/{running['instance']}/logs"
    assert (await stack.client.get(logs)).status_code == 401
    other_logs = logs.replace(str(running["tenant"]), str(other))
    assert (await stack.client.get(other_logs, headers=stranger)).status_code == 404
    assert len(fake.seen) == before


async def test_no_traffic_before_the_probe_passes_then_the_app_answers(
    stack: Stack, agent, running
) -> None:
    fake, _ = agent
    viewer = token(running["tenant"], "viewer")
    waiting = await stack.client.get(port_path(running, rest="/"), headers=viewer)
    assert waiting.status_code == 503, waiting.text
    await stack.consumed(
        await stack.allocation(running["replica"], "workload_ready", **running["scope"])
    )
    answer = await stack.client.get(
        port_path(running, rest="/api/items"),
        params={"q": "1"},
        headers=viewer | {"Cookie": "portal=secret", "X-Custom": "kept"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"echo": "/api/items", "query": {"q": "1"}, "body": ""}
    assert answer.headers["x-from-app"] == "yes"
    seen = fake.seen[-1]
    assert seen["allocation"] == str(running["allocation"]) and seen["port"] == 8000
    assert "authorization" not in seen["headers"] and "cookie" not in seen["headers"]
    assert seen["headers"]["x-custom"] == "kept"
    claims = seen["claims"]
    assert claims["aud"] == f"node:{NODE}" and claims["scope"] == "port"
    assert claims["allocation_id"] == str(running["allocation"]) and claims["port"] == 8000
    assert 0 < claims["exp"] - claims["iat"] <= 60
    posted = await stack.client.post(
        port_path(running, rest="/submit"), content=b"hello", headers=viewer
    )
    assert posted.json()["body"] == "hello"
    root = await stack.client.get(port_path(running), headers=viewer)
    assert root.json()["echo"] == "/"

    logs = await stack.client.get(
        f"{running['base']}/instances/{running['instance']}/logs",
        params={"follow": "true"},
        headers=viewer,
    )
    assert logs.status_code == 200 and logs.text == "line 0\nline 1\nline 2\n"
    seen = fake.seen[-1]
    assert seen["logs"] == str(running["allocation"]) and seen["query"] == {"follow": "true"}
    assert seen["claims"]["scope"] == "logs" and seen["claims"]["port"] == 0
