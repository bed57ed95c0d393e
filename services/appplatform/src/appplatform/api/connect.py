"""Connect routes: the port proxy (any method, `/v1/apps/instances/{id}/ports/{port}/...`),
an instance's logs (`?follow=` streams), and the JWKS node agents verify app-proxy tokens
with. The caller's Authorization header and cookies never reach the app; the agent gets
`X-App-Proxy: <token>` instead. Bodies stream both ways' answers back as they come."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from litestar import Request, Response, get, route
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.response import Stream

from appplatform.app.connect import Target, logs_target, port_target
from platformkit.auth import Principal
from platformkit.db import Database
from platformkit.errors import ServiceUnavailable

PROXY_HEADER = "X-App-Proxy"
# Not forwarded to the agent: hop-by-hop headers, the caller's credentials, what the proxy
# sets itself.
_DROP_REQUEST = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailers", "transfer-encoding", "upgrade", "host", "content-length", "authorization",
        "cookie", "x-app-proxy",
    }
)  # fmt: skip
_DROP_RESPONSE = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailers", "transfer-encoding", "upgrade", "content-length", "date", "server",
    }
)  # fmt: skip
# What the gateway forwards (services/gateway routes.METHODS): HEAD and OPTIONS stop there.
METHODS: list[Any] = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _operation_id(handler: Any, method: Any, parts: list[Any]) -> str:
    """proxyPortGet, proxyPortGetPath, ... (one per method and path)."""
    tail = "Path" if any(getattr(p, "name", None) == "path" for p in parts) else ""
    name = getattr(method, "value", str(method))
    return f"proxyPort{name.title()}{tail}"


def _client(state: State) -> httpx.AsyncClient:
    return state.agent_client


async def _forward(
    client: httpx.AsyncClient, target: Target, method: str, request: Request[Any, Any, Any],
    body: bytes | None,
) -> Response[Any]:  # fmt: skip
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST]
    headers.append((PROXY_HEADER, target.token))
    upstream = client.build_request(
        method, target.url, params=request.url.query or None, headers=headers, content=body
    )
    try:
        answer = await client.send(upstream, stream=True)
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"the replica's node agent did not answer: {exc}") from None
    return Stream(
        answer.aiter_raw(),
        status_code=answer.status_code,
        headers={k: v for k, v in answer.headers.items() if k.lower() not in _DROP_RESPONSE},
        background=BackgroundTask(answer.aclose),
    )


@route(
    ["/v1/apps/instances/{instance_id:uuid}/ports/{port:int}",
     "/v1/apps/instances/{instance_id:uuid}/ports/{port:int}/{path:path}"],
    http_method=METHODS,
    operation_id=_operation_id,
    tags=["connect"],
)  # fmt: skip
async def proxy_port(
    instance_id: uuid.UUID,
    port: int,
    request: Request[Any, Any, Any],
    db: Database,
    state: State,
    principal: Principal,
    path: str = "/",
) -> Response[Any]:
    """An exposed http port of the instance (workload.read in its project), proxied to a
    ready replica through its node's agent."""
    target = await port_target(db, state.app_keys, principal, instance_id, port, path)
    body = await request.body() if request.method not in ("GET", "HEAD") else None
    return await _forward(_client(state), target, request.method, request, body)


@get(
    "/v1/apps/tenants/{tenant_id:uuid}/projects/{project_id:uuid}/instances/{instance_id:uuid}/logs",
    operation_id="instanceLogs",
    tags=["instances"],
)
async def instance_logs(
    tenant_id: uuid.UUID,
    project_id: uuid.UUID,
    instance_id: uuid.UUID,
    request: Request[Any, Any, Any],
    db: Database,
    state: State,
    principal: Principal,
    follow: bool = False,
    replica: uuid.UUID | None = None,
) -> Response[Any]:
    """The stdout and stderr of a replica (the first running one unless `replica` names one;
    workload.read), from its node's agent; `follow=true` keeps streaming."""
    target = await logs_target(
        db, state.app_keys, principal, tenant_id, project_id, instance_id, replica
    )
    target = Target(target.url + ("?follow=true" if follow else ""), target.token)
    client = _client(state)
    headers = [(PROXY_HEADER, target.token)]
    upstream = client.build_request("GET", target.url, headers=headers)
    try:
        answer = await client.send(upstream, stream=True)
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"the replica's node agent did not answer: {exc}") from None
    return Stream(
        answer.aiter_raw(),
        status_code=answer.status_code,
        headers={k: v for k, v in answer.headers.items() if k.lower() not in _DROP_RESPONSE},
        background=BackgroundTask(answer.aclose),
    )


@get("/v1/apps/.well-known/jwks.json", operation_id="appProxyJwks", tags=["connect"])
async def jwks(state: State) -> dict[str, Any]:
    """Public: the keys node agents verify app-proxy tokens with."""
    return state.app_keys.jwks()


CONNECT_ROUTES = [proxy_port, instance_logs, jwks]
