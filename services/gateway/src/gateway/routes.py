"""Forwarding (HTTP requests, and WebSocket sessions frame by frame) and the status
readback."""

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from litestar import Request, Response, WebSocket, get, route, websocket
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect
from litestar.response import Stream
from opentelemetry.propagate import inject
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.upstreams import HOP_BY_HOP, RESPONSE_OWN, WEBSOCKET_OWN, BodyLimits
from platformkit.errors import BadRequest, NotFound, ProblemError, ServiceUnavailable
from platformkit.settings import ServiceSettings

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
log = logging.getLogger(__name__)


def _forward_headers(request: Request[Any, Any, Any]) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    headers.pop("traceparent", None)
    headers.pop("tracestate", None)
    inject(headers)  # the gateway's own span, child of the caller's trace
    headers["x-forwarded-for"] = _forwarded_for(
        request.headers.get("x-forwarded-for"), request.client.host if request.client else ""
    )
    return headers


def _forwarded_for(arrived: str | None, peer: str) -> str:
    """X-Forwarded-For with the peer appended (RFC 7239's list, in its de-facto header):
    a service believes only the entries its configured proxy hops appended, counted from
    the right, so whatever a client wrote on the left cannot pass for its address."""
    return f"{arrived}, {peer}" if arrived and arrived.strip() else peer


class BodyTooLarge(ProblemError):
    status = 413
    title = "Request body too large"
    slug = "body-too-large"


# Bodies up to this size are read whole (the common JSON request, one write upstream);
# longer ones, and those of unknown length, are streamed through as they arrive.
SMALL_BODY = 65_536
# Answers up to this size (by their Content-Length) are read whole; longer ones and those of
# unknown length (a followed log) stream to the client as the upstream sends them.
SMALL_ANSWER = 1_048_576


class _Body:
    """The client's body, streamed upstream and counted against the route's limit."""

    def __init__(self, request: Request[Any, Any, Any], limit: int) -> None:
        self.chunks = request.stream()
        self.limit, self.seen, self.done = limit, 0, False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.chunks:
            self.seen += len(chunk)
            if self.seen > self.limit:
                raise BodyTooLarge(f"the body is over this route's {self.limit} bytes")
            yield chunk
        self.done = True

    async def drain(self) -> None:
        """Read what the upstream did not (it answered early, e.g. a blob it already has):
        a client that writes its whole body before reading would otherwise meet a closed
        connection instead of the answer."""
        if not self.done:
            async for chunk in self.chunks:
                self.seen += len(chunk)
                if self.seen > self.limit:
                    return
            self.done = True


async def _content(
    request: Request[Any, Any, Any], limits: BodyLimits, headers: dict[str, str]
) -> bytes | _Body:
    limit = limits.for_request(request.method, request.url.path)
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("Content-Length is not a number")
        if int(declared) > limit:
            raise BodyTooLarge(f"the body is {declared} bytes, over this route's {limit}")
        if int(declared) <= SMALL_BODY:
            return await request.body()
        headers["content-length"] = declared  # streamed with its length, not chunked
    return _Body(request, limit)


async def _send(
    state: State, upstream: str, request: Request[Any, Any, Any]
) -> tuple[httpx.Response, bytes | _Body]:
    client: httpx.AsyncClient = state.http
    # The path exactly as the client encoded it: the decoded one would turn an encoded
    # `?`, `/` or control character into a different route upstream (or an invalid URL).
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    url = httpx.URL(upstream).copy_with(raw_path=raw_path)
    headers = _forward_headers(request)
    content = await _content(request, state.body_limits, headers)
    outgoing = client.build_request(
        request.method,
        url,
        params=list(request.query_params.multi_items()),
        content=content,
        headers=headers,
    )
    try:
        return await client.send(outgoing, stream=True), content
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"upstream for {request.url.path} is unavailable") from exc


@route(
    "/v1/{prefix:str}/{rest:path}",
    http_method=METHODS,
    operation_id="forward",
    include_in_schema=False,
    request_max_body_size=None,  # limited per route by BodyLimits while it streams
)
async def forward(
    request: Request[Any, Any, Any], state: State, prefix: str
) -> Response[bytes] | Stream:
    upstream = state.upstreams.get(prefix)
    if upstream is None:
        raise NotFound(f"no service serves /v1/{prefix}")
    return await proxy(state, upstream, request)


async def proxy(
    state: State, upstream: str, request: Request[Any, Any, Any]
) -> Response[bytes] | Stream:
    """The request passed to `upstream` and its answer passed back (small ones whole)."""
    reply, content = await _send(state, upstream, request)
    try:
        if isinstance(content, _Body):
            await content.drain()
        length = reply.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) <= SMALL_ANSWER:
            body = await reply.aread()  # decoded: content-encoding is dropped with it
            await reply.aclose()
            headers = {
                k: v for k, v in reply.headers.items() if k.lower() not in HOP_BY_HOP | RESPONSE_OWN
            }
            return Response(body, status_code=reply.status_code, headers=headers)
    except BaseException:
        await reply.aclose()
        raise
    # Streamed as it comes, bytes as the upstream encoded them (its content-encoding and
    # length stay with them).
    headers = {
        k: v
        for k, v in reply.headers.items()
        if k.lower() not in (HOP_BY_HOP | RESPONSE_OWN) - {"content-encoding", "content-length"}
    }
    return Stream(
        _relay_answer(reply, request.url.path),
        status_code=reply.status_code,
        headers=headers,
        background=BackgroundTask(reply.aclose),
    )


async def _relay_answer(reply: httpx.Response, path: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in reply.aiter_raw():
            yield chunk
    except httpx.HTTPError:
        # the status line is already out: all that is left is to end the answer short
        log.warning("upstream answer cut short", extra={"fields": {"path": path}})
        raise
    finally:
        await reply.aclose()


def _ws_url(upstream: str, socket: WebSocket[Any, Any, Any]) -> str:
    base = (
        "wss://" + upstream[len("https://") :]
        if upstream.startswith("https://")
        else ("ws://" + upstream[len("http://") :])
    )
    raw_path = (socket.scope.get("raw_path") or socket.url.path.encode()).decode("latin-1")
    query = socket.scope.get("query_string") or b""
    return base + raw_path + (f"?{query.decode('latin-1')}" if query else "")


@websocket("/v1/{prefix:str}/{rest:path}", name="forwardWebSocket")
async def forward_websocket(socket: WebSocket[Any, Any, Any], prefix: str, state: State) -> None:
    """A WebSocket to the owning service (the terminal), relayed frame by frame: each frame
    is sent on as it arrives, never collected (a slow reader slows the writer through TCP
    backpressure), and the close code and reason pass through both ways. The upgrade's
    Authorization, offered subprotocols and trace context go upstream with the client's
    address in X-Forwarded-For; the subprotocol the service picks comes back."""
    upstream = state.upstreams.get(prefix)
    if upstream is None:
        await socket.accept()
        await socket.close(4404, f"no service serves /v1/{prefix}")
        return
    # (uvicorn's WebSocket scope keeps the client's header case: compare lower-cased)
    headers = {
        k.lower(): v
        for k, v in socket.headers.items()
        if k.lower() not in HOP_BY_HOP | WEBSOCKET_OWN | {"traceparent", "tracestate"}
    }
    inject(headers)
    headers["x-forwarded-for"] = _forwarded_for(
        headers.get("x-forwarded-for"), socket.client.host if socket.client else ""
    )
    offered = list(socket.scope.get("subprotocols") or [])
    try:
        upstream_ws = await connect(
            _ws_url(upstream, socket),
            additional_headers=headers,
            subprotocols=offered or None,  # type: ignore[arg-type]
            compression=None,
            max_size=4 * 1024 * 1024,
            max_queue=4,
            ping_interval=20,
            open_timeout=10,
        )
    except InvalidStatus as refused:
        await socket.accept()
        await socket.close(4000 + refused.response.status_code, "refused upstream")
        return
    except (OSError, TimeoutError):
        await socket.accept()
        await socket.close(1011, f"upstream for /v1/{prefix} is unavailable")
        return
    async with upstream_ws:
        await socket.accept(subprotocols=upstream_ws.subprotocol)
        await _relay(socket, upstream_ws)


async def _relay(socket: WebSocket[Any, Any, Any], upstream: ClientConnection) -> None:
    async def client_to_upstream() -> None:
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(int(message.get("code") or 1000), message.get("reason") or "")
                return
            data = message.get("bytes")
            await upstream.send(data if data is not None else message.get("text") or "")

    async def upstream_to_client() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in upstream:
                if isinstance(message, bytes):
                    await socket.send_bytes(message)
                else:
                    await socket.send_text(message)
        code = upstream.close_code  # None: the upstream went away without a close frame
        with contextlib.suppress(Exception):
            await socket.close(code if code and code != 1006 else 1011, upstream.close_reason or "")

    tasks = [asyncio.create_task(client_to_upstream()), asyncio.create_task(upstream_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except WebSocketDisconnect:
        pass
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


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
    gateway: dict[str, Any] = {
        "name": "gateway",
        "ready": True,
        "checks": {},
        "last_seen_at": dt.datetime.now(dt.UTC).isoformat(),
        "stale": False,
    }
    # audit shows versions only to operators; the gateway's own follow what audit showed
    if any(s.get("version") for s in report["services"]):
        gateway |= {
            "version": settings.version,
            "git_sha": settings.git_sha,
            "instance": "self",
            "started_at": state.started_at,
        }
    report["services"].append(gateway)
    return report
