"""The agent's side of an app's connect URL and logs (docs/gpuaas.md, "Agent proxy").

appplatform authorizes the caller (workload.read on the instance's project), picks a ready
replica and calls this agent with `X-App-Proxy: <JWT>` that it minted and signed with its
own key (JWKS at GPUCLOUD_APPS_JWKS_URL, issuer `appplatform`):

- header `typ: app-proxy+jwt` (no other kind of token passes), algorithm EdDSA pinned, a
  `kid` of that JWKS, no `crit`;
- `iss` appplatform, `aud` `node:<this node's name>`, `allocation_id` the path's, `iat`
  and `exp` required with `exp - iat` at most 60 s; `port` the path's declared port, or 0 /
  absent with `scope: logs` for the logs route. The `jti` is not remembered here (a token
  lives a minute and opens one request; appplatform mints one per request).

Then `ANY /v1/workloads/{allocation_id}/ports/{port}/{path}` goes to
`127.0.0.1:<host port>/{path}?{query}` only when `port` is a declared, exposed `http` port
of an app workload running here whose probe passes (503 while it does not). The caller's
`Authorization`, cookies, `X-App-Proxy` and hop-by-hop headers are not forwarded; the app
sees `X-Forwarded-Prefix` (the path up to the port). `GET /v1/workloads/{allocation_id}/
logs?follow=` streams the workload's log (its bounded file; with `follow`, new output as
it comes, until the workload stops here or an hour passes). Refusals are RFC 9457 problems:
401 for a missing or invalid token, 403 for a token of another allocation or port, 404 for
an allocation not running an app here or a port it does not expose. No GPUCLOUD_APPS_JWKS_URL:
every request is refused (401).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
from litestar import Request, Response, get, route
from litestar.datastructures import State
from litestar.response import Stream

from node_agent.reconcile import Reconciler
from node_agent.session_tokens import node_audience
from node_agent.workloads import READY, read_log
from platformkit.errors import Forbidden, NotFound, ServiceUnavailable, Unauthorized
from platformkit.tokens import HttpJwks, InvalidToken, JwksCache

TOKEN_TYPE = "app-proxy+jwt"
HEADER = "x-app-proxy"
DEFAULT_ISSUER = "appplatform"
MAX_LIFETIME_S = 60
LOGS_SCOPE = "logs"
FOLLOW_FOR_S = 3600.0
# Never forwarded to the app: the caller's credentials and the proxy's own token, and the
# hop-by-hop headers (RFC 9110 section 7.6.1).
DROPPED = frozenset(
    {
        "authorization", "cookie", HEADER, "host", "connection", "keep-alive",
        "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding",
        "upgrade", "content-length",
    }
)  # fmt: skip
DROPPED_BACK = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "set-cookie"}
)


@dataclasses.dataclass(frozen=True)
class ProxyGrant:
    allocation_id: str
    port: int  # 0 for the logs
    scope: str | None


class AppProxyVerifier:
    """Verifies appplatform's X-App-Proxy tokens against its JWKS."""

    def __init__(
        self,
        keys: JwksCache,
        *,
        node_name: str,
        issuer: str = DEFAULT_ISSUER,
        leeway_s: float = 5.0,
        clock: Any = time.time,
    ) -> None:
        self.keys, self.issuer, self.leeway_s = keys, issuer, leeway_s
        self.audience = node_audience(node_name)
        self.clock = clock

    @classmethod
    def from_jwks_url(cls, url: str, *, node_name: str, **kwargs: Any) -> AppProxyVerifier:
        return cls(JwksCache(HttpJwks(url)), node_name=node_name, **kwargs)

    async def verify(self, token: str) -> ProxyGrant:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("the proxy token is not a JWT") from None
        if header.get("alg") != "EdDSA":
            raise InvalidToken("the proxy token's algorithm is not accepted")
        if str(header.get("typ", "")).lower() != TOKEN_TYPE:
            raise InvalidToken("the token is not an app proxy token")
        if "crit" in header:
            raise InvalidToken("the token has critical headers")
        kid = header.get("kid")
        key = await self.keys.key(kid) if isinstance(kid, str) and kid else None
        if key is None or key.algorithm_name != "EdDSA":
            raise InvalidToken("the proxy token's key is unknown")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=["EdDSA"],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the proxy token has expired") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the proxy token is not valid: {type(exc).__name__}") from None
        try:
            lifetime = float(claims["exp"]) - float(claims["iat"])
            allocation_id = claims["allocation_id"]
            port = claims.get("port") or 0
            scope = claims.get("scope")
        except (KeyError, TypeError, ValueError):
            raise InvalidToken("the proxy token's claims are malformed") from None
        if lifetime > MAX_LIFETIME_S:
            raise InvalidToken("the proxy token lives too long")
        if float(claims["iat"]) > self.clock() + self.leeway_s:
            raise InvalidToken("the proxy token is issued in the future")
        if not isinstance(allocation_id, str) or not allocation_id:
            raise InvalidToken("the proxy token names no allocation")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidToken("the proxy token's port is malformed")
        return ProxyGrant(allocation_id, port, scope if isinstance(scope, str) else None)


class AppProxy:
    def __init__(self, verifier: AppProxyVerifier | None, reconciler: Reconciler) -> None:
        self.verifier = verifier
        self.reconciler = reconciler
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))

    async def authorize(self, request: Request[Any, Any, Any], allocation_id: str) -> ProxyGrant:
        token = request.headers.get(HEADER)
        if self.verifier is None:
            raise Unauthorized("this node accepts no app proxy token (no JWKS configured)")
        if not token:
            raise Unauthorized("an X-App-Proxy token is required")
        try:
            grant = await self.verifier.verify(token)
        except InvalidToken as exc:
            raise Unauthorized(str(exc)) from None
        if grant.allocation_id != allocation_id:
            raise Forbidden("the proxy token is for another allocation")
        return grant

    def host_port(self, allocation_id: str, port: int) -> int:
        w = self.reconciler.workloads.get(allocation_id)
        runtime = self.reconciler.runtimes.get(allocation_id)
        if w is None or not w.app or runtime is None:
            raise NotFound(f"allocation {allocation_id} runs no app on this node")
        declared = next((p for p in runtime.ports if p.port == port), None)
        if declared is None or not declared.expose or declared.protocol != "http":
            raise NotFound(f"port {port} is not an exposed http port of this app")
        ready = w.alive() and (w.prober is None or w.prober.readiness == READY)
        if not ready:
            raise ServiceUnavailable(f"allocation {allocation_id} is not ready")
        host = w.ports.get(str(port))
        if host is None:
            raise NotFound(f"port {port} has no host port on this node")
        return host

    async def forward(
        self, request: Request[Any, Any, Any], allocation_id: str, port: int, path: str
    ) -> Response[bytes]:
        grant = await self.authorize(request, allocation_id)
        if grant.port != port or grant.scope == LOGS_SCOPE:
            raise Forbidden("the proxy token is for another port")
        host = self.host_port(allocation_id, port)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROPPED}
        headers["x-forwarded-prefix"] = f"/v1/workloads/{allocation_id}/ports/{port}"
        target = f"http://127.0.0.1:{host}/{path.lstrip('/')}"
        try:
            answer = await self.client.request(
                request.method,
                target,
                params=request.url.query or None,
                headers=headers,
                content=await request.body(),
            )
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"the app did not answer: {type(exc).__name__}") from None
        back = {k: v for k, v in answer.headers.items() if k.lower() not in DROPPED_BACK}
        return Response(answer.content, status_code=answer.status_code, headers=back)

    async def logs(
        self, request: Request[Any, Any, Any], allocation_id: str, follow: bool
    ) -> Stream:
        grant = await self.authorize(request, allocation_id)
        if grant.port != 0 or grant.scope != LOGS_SCOPE:
            raise Forbidden("the proxy token is not for this allocation's logs")
        w = self.reconciler.workloads.get(allocation_id)
        if w is None or not w.app:
            raise NotFound(f"allocation {allocation_id} runs no app on this node")
        path = self.reconciler.log_path(allocation_id)

        async def chunks() -> AsyncIterator[bytes]:
            data = await asyncio.to_thread(read_log, path)
            yield data
            offset = _size(path)
            deadline = time.monotonic() + FOLLOW_FOR_S
            while follow and time.monotonic() < deadline:
                if allocation_id not in self.reconciler.workloads:
                    return
                await asyncio.sleep(0.2)
                size = _size(path)
                if size < offset:
                    offset = 0  # trimmed: the file started again
                if size > offset:
                    more = await asyncio.to_thread(_read_from, path, offset)
                    offset += len(more)
                    yield more

        return Stream(chunks(), media_type="text/plain; charset=utf-8")

    async def close(self) -> None:
        await self.client.aclose()


def _size(path: Any) -> int:
    try:
        return int(path.stat().st_size)
    except OSError:
        return 0


def _read_from(path: Any, offset: int) -> bytes:
    with contextlib.suppress(OSError), path.open("rb") as f:
        f.seek(offset)
        return f.read(1024 * 1024)
    return b""


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@route(
    [
        "/v1/workloads/{allocation_id:str}/ports/{port:int}",
        "/v1/workloads/{allocation_id:str}/ports/{port:int}/{path:path}",
    ],
    http_method=_METHODS,
    name="appPortProxy",
    include_in_schema=False,
)
async def app_port(
    request: Request[Any, Any, Any], allocation_id: str, port: int, state: State, path: str = "/"
) -> Response[bytes]:
    """An app's declared, exposed http port, for appplatform's connect URL only (the
    X-App-Proxy token is the authorization)."""
    proxy: AppProxy = state.app_proxy
    return await proxy.forward(request, allocation_id, port, path)


@get(
    "/v1/workloads/{allocation_id:str}/logs",
    name="appLogs",
    include_in_schema=False,
)
async def app_logs(
    request: Request[Any, Any, Any], allocation_id: str, state: State, follow: bool = False
) -> Stream:
    """The app workload's stdout and stderr (its bounded log file)."""
    proxy: AppProxy = state.app_proxy
    return await proxy.logs(request, allocation_id, follow)
