"""terminal-gateway's routes (through the gateway at `/v1/terminal`); docs/terminal.md
lists them with who may call each. Opening a session needs `workload.manage` in the
allocation's project (and step-up when the tenant's policy requires it); the tenant's
sessions, recordings, kills and policy are for its owners and admins (and the operator);
the JWKS is public. Another tenant's session or allocation reads as 404, a role too low as
403, no token as 401.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, WebSocket, get, post, put, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect
from litestar.params import Parameter
from litestar.response import Stream

from gpucloud_terminal import protocol
from gpucloud_terminal.protocol import Control
from platformkit.auth import Principal, bearer_token
from platformkit.errors import Forbidden, NotFound, ProblemError
from platformkit.idempotency import check_key
from platformkit.tokens import InvalidToken
from terminal_gateway.api.schemas import (
    Policy,
    SessionCreate,
    SessionOut,
    SessionToken,
    SshEndpoint,
    session_out,
)
from terminal_gateway.app.relay import Relay, RelayRegistry
from terminal_gateway.app.sessions import Minted, SessionService
from terminal_gateway.domain import access
from terminal_gateway.store.repository import (
    ProjectionRepository,
    RecordingRepository,
    SessionRepository,
)

IdempotencyKey = Annotated[str | None, Parameter(header="Idempotency-Key")]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
ASCIICAST = "application/x-asciicast"


@dataclasses.dataclass
class TerminalContext:
    service: SessionService
    registry: RelayRegistry
    instance: str


def _context(state: State) -> TerminalContext:
    return state.terminal


def client_address(connection: Any) -> str | None:
    """The client as the gateway saw it (the entry it appended to X-Forwarded-For, the
    rightmost), else the peer."""
    forwarded = connection.headers.get("x-forwarded-for", "")
    last = forwarded.split(",")[-1].strip()
    if last:
        return last[:100]
    return connection.client.host if connection.client else None


def _minted(minted: Minted) -> Response[SessionToken]:
    body = SessionToken(
        session=session_out(minted.session), token=minted.token,
        connect_url=minted.connect_url, expires_at=minted.expires_at,
    )  # fmt: skip
    return Response(body, status_code=201, headers=NO_STORE)


def require_tenant_admin(principal: Principal, tenant_id: uuid.UUID) -> None:
    principal.require_tenant(tenant_id)
    if principal.is_operator:
        return
    if principal.project_ids is not None or not access.is_tenant_admin(principal.roles):
        raise Forbidden("requires one of the roles: owner, admin")


class SessionController(Controller):
    path = "/v1/terminal/sessions"
    tags = ["sessions"]

    @post("/", operation_id="openTerminalSession", status_code=201)
    async def create(
        self, request: Request[Any, Any, Any], data: SessionCreate, state: State,
        principal: Principal, idempotency_key: IdempotencyKey = None,
    ) -> Response[SessionToken]:  # fmt: skip
        """Mint a session on a running allocation and its single-use connect token (at most
        60 s). Then open `connect_url` as a WebSocket with the token."""
        minted = await _context(state).service.mint(
            principal, data.allocation_id, client_address=client_address(request),
            idempotency_key=check_key(idempotency_key),
        )  # fmt: skip
        return _minted(minted)

    @post("/{session_id:uuid}/attach", operation_id="attachTerminalSession", status_code=201)
    async def attach(
        self, session_id: uuid.UUID, state: State, principal: Principal
    ) -> Response[SessionToken]:
        """A fresh connect token for one's own open or detached session (a reattach: the
        screen is replayed from the node's scrollback)."""
        return _minted(await _context(state).service.attach_token(principal, session_id))

    @get("/{session_id:uuid}", operation_id="getTerminalSession")
    async def retrieve(
        self, session_id: uuid.UUID, state: State, principal: Principal
    ) -> SessionOut:
        service = _context(state).service
        async with service.db.unit_of_work() as uow:
            row = await SessionRepository(uow).get(session_id)
        if row is None:
            raise NotFound("no such session")
        own = (
            principal.kind == "user"
            and principal.subject == str(row["user_id"])
            and (principal.tenant_id == row["tenant_id"])
        )
        if not own:
            try:
                require_tenant_admin(principal, row["tenant_id"])
            except Forbidden:
                raise NotFound("no such session") from None
        return session_out(row)


class TenantSessionController(Controller):
    path = "/v1/terminal/tenants/{tenant_id:uuid}"
    tags = ["sessions"]

    @get("/sessions", operation_id="listTerminalSessions")
    async def index(
        self, tenant_id: uuid.UUID, state: State, principal: Principal,
        session_state: Annotated[
            Literal["minted", "open", "detached", "closed", "expired", "revoked"] | None,
            Parameter(query="state"),
        ] = None,
        allocation_id: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
    ) -> list[SessionOut]:  # fmt: skip
        """The tenant's sessions, newest first (who, which allocation, from where, how long)."""
        require_tenant_admin(principal, tenant_id)
        async with _context(state).service.db.unit_of_work() as uow:
            rows = await SessionRepository(uow).of_tenant(
                tenant_id, state=session_state, allocation_id=allocation_id, limit=limit
            )
        return [session_out(r) for r in rows]

    @get(
        "/sessions/{session_id:uuid}/recording",
        operation_id="getTerminalRecording",
        media_type=ASCIICAST,
    )
    async def recording(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, state: State, principal: Principal
    ) -> Stream:
        """The session's recording, asciicast v2 (play it with `asciinema play`). Its
        SHA-256 is the session's `recording_digest` once the session has ended."""
        require_tenant_admin(principal, tenant_id)
        db = _context(state).service.db
        async with db.unit_of_work() as uow:
            row = await SessionRepository(uow).get(session_id)
        if row is None or row["tenant_id"] != tenant_id:
            raise NotFound("no such session")

        async def chunks() -> AsyncIterator[bytes]:
            async with db.unit_of_work() as uow:
                for chunk in await RecordingRepository(uow).chunks(session_id):
                    yield chunk

        return Stream(chunks(), media_type=ASCIICAST, headers={"Cache-Control": "no-store"})

    @post(
        "/sessions/{session_id:uuid}/revoke", operation_id="revokeTerminalSession", status_code=202
    )
    async def revoke(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, state: State, principal: Principal
    ) -> None:
        """End a session now (its user is told why; it is recorded as `revoked`, `killed`)."""
        require_tenant_admin(principal, tenant_id)
        await _context(state).service.kill(principal, tenant_id, session_id)

    @get("/policy", operation_id="getTerminalPolicy")
    async def policy(self, tenant_id: uuid.UUID, state: State, principal: Principal) -> Policy:
        require_tenant_admin(principal, tenant_id)
        policy = await _context(state).service.get_policy(tenant_id)
        return Policy(require_mfa=policy.require_mfa, idle_timeout_s=policy.idle_timeout_s)

    @put("/policy", operation_id="setTerminalPolicy")
    async def set_policy(
        self, tenant_id: uuid.UUID, data: Policy, state: State, principal: Principal
    ) -> Policy:
        """Require a second factor for terminals, and an idle timeout (60 s to 1 day)."""
        require_tenant_admin(principal, tenant_id)
        principal.require_recent_mfa(_context(state).service.settings.mfa_max_age_s)
        policy = await _context(state).service.set_policy(
            principal, tenant_id, data.require_mfa, data.idle_timeout_s
        )
        return Policy(require_mfa=policy.require_mfa, idle_timeout_s=policy.idle_timeout_s)


@get("/v1/terminal/.well-known/jwks.json", operation_id="terminalJwks", tags=["keys"])
async def jwks(state: State) -> dict[str, Any]:
    """terminal-gateway's session token keys; node agents verify session tokens with them."""
    return _context(state).service.keys.jwks()


@get("/v1/terminal/ssh", operation_id="terminalSshEndpoint", tags=["keys"])
async def ssh_endpoint(state: State) -> SshEndpoint:
    """Where the SSH endpoint is and the host key it presents (public, like the key itself:
    every client that connects sees it). `gpucloud ssh` pins it in a known_hosts file."""
    service = _context(state).service
    where = service.settings.ssh_endpoint()
    if where is None:
        raise NotFound("this installation runs no SSH endpoint")
    host, port = where
    name = host if port == 22 else f"[{host}]:{port}"
    key = service.keys.host_public_key
    return SshEndpoint(host=host, port=port, host_keys=[key], known_hosts=[f"{name} {key}"])


class WebSocketEnd:
    """A browser's (or the CLI's) socket as the relay's client end."""

    def __init__(self, socket: WebSocket[Any, Any, Any]) -> None:
        self.socket = socket

    async def receive(self) -> bytes | Control | None:
        while True:
            message = await self.socket.receive()
            if message["type"] == "websocket.disconnect":
                return None
            if message.get("bytes") is not None:
                return message["bytes"]
            if message.get("text") is not None:
                try:
                    return protocol.decode(message["text"])
                except protocol.ProtocolError:
                    continue

    async def send_bytes(self, data: bytes) -> None:
        await self.socket.send_bytes(data)

    async def send_control(self, type_: str, **fields: Any) -> None:
        await self.socket.send_text(protocol.encode(type_, **fields))

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.socket.close(code, reason[:120])


@websocket("/v1/terminal/sessions/{session_id:uuid}/connect", name="connectTerminalSession")
async def connect(socket: WebSocket[Any, Any, Any], session_id: uuid.UUID, state: State) -> None:
    """The terminal itself (gpucloud_terminal.protocol). Refusals close with 4000 + the HTTP
    status (4401, 4403, 4404, 4409) and the reason."""
    offered = list(socket.scope.get("subprotocols") or [])
    await socket.accept(
        subprotocols=protocol.SUBPROTOCOL if protocol.SUBPROTOCOL in offered else None
    )
    ctx = _context(state)
    end = WebSocketEnd(socket)
    instance = f"{ctx.instance}/{uuid.uuid4().hex[:12]}"  # this relay (leases are per relay)
    with contextlib.suppress(WebSocketDisconnect):
        try:
            session, node, token = await _admit(ctx, socket, session_id, offered, instance)
        except ProblemError as problem:
            await end.close(4000 + problem.status, str(problem.detail or problem.title))
            return
        await Relay(ctx.service, ctx.registry, session, node, token, end, instance=instance).run()


async def _admit(
    ctx: TerminalContext,
    socket: WebSocket[Any, Any, Any],
    session_id: uuid.UUID,
    offered: list[str],
    instance: str,
) -> tuple[Any, Any, str]:
    token = bearer_token(socket) or protocol.token_from_subprotocols(offered)
    if not token:
        raise InvalidToken("a connect token is required")
    async with ctx.service.db.unit_of_work() as uow:
        session = await SessionRepository(uow).get(session_id)
        node = await ProjectionRepository(uow).node(session["node_id"]) if session else None
    if session is None or node is None:
        raise NotFound("no such session")
    claims = await ctx.service.keys.verify_session_token(token, node["name"])
    if claims.get("sid") != str(session_id):
        raise NotFound("no such session")
    try:
        token_id = uuid.UUID(str(claims["jti"]))
    except ValueError:
        raise InvalidToken("the connect token is malformed") from None
    opened, node = await ctx.service.open(session_id, token_id, instance, client_address(socket))
    return opened, node, token
