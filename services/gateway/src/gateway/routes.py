"""Forwarding and the status readback."""

import datetime as dt
from typing import Any

import httpx
from litestar import Request, Response, get, route
from litestar.datastructures import State
from opentelemetry.propagate import inject

from gateway.upstreams import HOP_BY_HOP, RESPONSE_OWN
from platformkit.errors import NotFound, ServiceUnavailable
from platformkit.settings import ServiceSettings

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _forward_headers(request: Request[Any, Any, Any]) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    headers.pop("traceparent", None)
    headers.pop("tracestate", None)
    inject(headers)  # the gateway's own span, child of the caller's trace
    headers["x-forwarded-for"] = request.client.host if request.client else ""
    return headers


async def _send(state: State, upstream: str, request: Request[Any, Any, Any]) -> httpx.Response:
    client: httpx.AsyncClient = state.http
    # The path exactly as the client encoded it: the decoded one would turn an encoded
    # `?`, `/` or control character into a different route upstream (or an invalid URL).
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    url = httpx.URL(upstream).copy_with(raw_path=raw_path)
    try:
        return await client.request(
            request.method,
            url,
            params=list(request.query_params.multi_items()),
            content=await request.body(),
            headers=_forward_headers(request),
        )
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"upstream for {request.url.path} is unavailable") from exc


@route(
    "/v1/{prefix:str}/{rest:path}",
    http_method=METHODS,
    operation_id="forward",
    include_in_schema=False,
)
async def forward(request: Request[Any, Any, Any], state: State, prefix: str) -> Response[bytes]:
    upstream = state.upstreams.get(prefix)
    if upstream is None:
        raise NotFound(f"no service serves /v1/{prefix}")
    reply = await _send(state, upstream, request)
    headers = {k: v for k, v in reply.headers.items() if k.lower() not in HOP_BY_HOP | RESPONSE_OWN}
    return Response(reply.content, status_code=reply.status_code, headers=headers)


@get("/v1/status", operation_id="getStatus", tags=["status"])
async def status(request: Request[Any, Any, Any], state: State) -> dict[str, Any]:
    """Every service's version and readiness (from audit's heartbeat read model), plus
    the gateway itself."""
    upstream = state.upstreams.get("audit")
    if upstream is None:
        raise ServiceUnavailable("no audit upstream configured")
    try:
        reply = await state.http.get(
            upstream + "/v1/audit/status", headers=_forward_headers(request)
        )
        reply.raise_for_status()
        report = reply.json()
    except httpx.HTTPError as exc:
        raise ServiceUnavailable("the status read model is unavailable") from exc
    settings: ServiceSettings = state.settings
    report["services"].append(
        {
            "name": "gateway",
            "version": settings.version,
            "git_sha": settings.git_sha,
            "ready": True,
            "checks": {},
            "instance": "self",
            "started_at": state.started_at,
            "last_seen_at": dt.datetime.now(dt.UTC).isoformat(),
            "stale": False,
        }
    )
    return report
