"""The PTY stream terminal-gateway relays a terminal session to.

`GET /v1/node/allocations/{allocation_id}/terminal` (WebSocket). The upgrade request
carries `Authorization: Bearer <terminal session token>` and `X-Terminal-Relay: <relay
assertion>` (session_tokens.py). The agent accepts the socket, verifies both and that the
allocation is one it runs now, and otherwise closes with 1008 (policy violation) and the
reason; no process starts for a refused caller.

A session (the token's `sid`) outlives its socket:

- **open**: the first connection starts the process: a login shell on a PTY (`mode:
  shell`), a command on a PTY (`exec`, `pty: true`) or on pipes (`exec`, `pty: false`).
  The process runs as the allocation's own user in its private directory (isolation.py).
- **detached**: the socket went away. A PTY session keeps its process and its scrollback
  ring (GPUCLOUD_TERMINAL_SCROLLBACK_BYTES, 256 KiB) for the token's `grace_s` (default
  300 s, at most GPUCLOUD_TERMINAL_MAX_GRACE_S); output keeps flowing into the ring. A
  pipe session ends at once (its streams cannot be replayed).
- **reattached**: a new connection for the same `sid`, same user, tenant and allocation,
  gets `attached {replay: N}` and the N bytes of scrollback, then live output. A second
  connection while one is attached takes over (the old one is told `closing: taken_over`).
- **ended**: the process exited (`exit {code}`, close 1000), no input for `idle_s`
  (`closing: idle_timeout`), the grace window passed, terminal-gateway sent `terminate`,
  or the allocation stopped running here (`closing: allocation_released`, close 1008).

Framing and control messages are gpucloud_terminal.protocol's. Flow control: `pause`
stops reading the PTY (the program blocks on its writes), `resume` goes on; besides that
the reader never runs more than MAX_AHEAD bytes ahead of what the socket has taken, so one
session holds at most its ring plus that in flight.

`GET /v1/node/allocations/{allocation_id}/forward` (WebSocket, `mode: forward`, `port`):
binary frames both ways to 127.0.0.1:<port> on this node, for `ssh -L`. With isolation on,
only a port a process of the allocation's own user listens on can be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from litestar import WebSocket, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect

from gpucloud_terminal import protocol
from node_agent.pty import PipeProcess, PtyProcess, Scrollback, read_fd
from node_agent.reconcile import Reconciler
from node_agent.session_tokens import (
    DEFAULT_ISSUER,
    RELAY_HEADER,
    SessionTokenVerifier,
    TerminalGrant,
)
from platformkit.tokens import InvalidToken

log = logging.getLogger(__name__)
POLICY_VIOLATION = protocol.POLICY_VIOLATION
NORMAL_CLOSURE = protocol.NORMAL_CLOSURE
# How often open sessions re-check that their allocation still runs here.
_WATCH_INTERVAL_S = 0.5
# The reader waits once this much output is not yet taken by the attached socket.
MAX_AHEAD = 256 * 1024
_SEND_CHUNK = 64 * 1024
ALLOCATION_RELEASED = (
    "allocation_released",
    "the allocation is no longer running",
    POLICY_VIOLATION,
)


@dataclasses.dataclass(frozen=True)
class TerminalSettings:
    jwks_url: str | None
    issuer: str = DEFAULT_ISSUER
    shell_path: str = "/bin/sh"
    cwd: Path | None = None
    scrollback_bytes: int = 256 * 1024
    default_grace_s: float = 300.0
    max_grace_s: float = 3600.0

    @classmethod
    def from_env(cls) -> TerminalSettings:
        env = os.environ.get
        cwd = env("GPUCLOUD_TERMINAL_CWD")
        scrollback = int(env("GPUCLOUD_TERMINAL_SCROLLBACK_BYTES") or 256 * 1024)
        if not 1024 <= scrollback <= protocol.MAX_BUFFERED:
            raise ValueError("GPUCLOUD_TERMINAL_SCROLLBACK_BYTES must be 1 KiB to 1 MiB")
        gateway = env("GPUCLOUD_TERMINAL_GATEWAY_URL")  # what the Helm chart gives a caller
        jwks = env("GPUCLOUD_TERMINAL_JWKS_URL") or (
            f"{gateway.rstrip('/')}/v1/terminal/.well-known/jwks.json" if gateway else None
        )
        return cls(
            jwks_url=jwks,
            issuer=env("GPUCLOUD_TERMINAL_TOKEN_ISSUER") or DEFAULT_ISSUER,
            shell_path=env("GPUCLOUD_TERMINAL_SHELL") or shutil.which("bash") or "/bin/sh",
            cwd=Path(cwd) if cwd else None,
            scrollback_bytes=scrollback,
            default_grace_s=float(env("GPUCLOUD_TERMINAL_GRACE_S") or 300),
            max_grace_s=float(env("GPUCLOUD_TERMINAL_MAX_GRACE_S") or 3600),
        )


class Attachment:
    """One socket attached to a session: sends output from `sent` on, takes input."""

    def __init__(self, socket: WebSocket[Any, Any, Any]) -> None:
        self.socket = socket
        self.sent = 0
        self.gone = asyncio.Event()
        self.close_code = NORMAL_CLOSURE
        self.close_reason = ""

    async def control(self, type_: str, **fields: Any) -> None:
        with contextlib.suppress(Exception):
            await self.socket.send_text(protocol.encode(type_, **fields))

    async def close(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        self.gone.set()


class TerminalSession:
    """A process and what the sockets attached to it over time have seen of it."""

    def __init__(
        self,
        grant: TerminalGrant,
        process: PtyProcess | PipeProcess,
        settings: TerminalSettings,
        on_end: Any,
        allocation_gone: Any,
    ) -> None:
        self.id = grant.session_id
        self.allocation_gone = allocation_gone
        self.allocation_id = grant.allocation_id
        self.user, self.tenant = grant.user, grant.tenant
        self.process = process
        self.pid = process.pid
        self.piped = isinstance(process, PipeProcess)
        self.ring = Scrollback(settings.scrollback_bytes)
        self.frames: asyncio.Queue[bytes] | None = asyncio.Queue(16) if self.piped else None
        self.settings = settings
        self.grace_s = settings.default_grace_s
        self.idle_s: float | None = None
        self.apply(grant)
        self.attachment: Attachment | None = None
        self.last_input = time.monotonic()
        self.running = asyncio.Event()  # cleared while the client said `pause`
        self.running.set()
        self.progress = asyncio.Event()  # output appended, sent, resumed, attached ...
        self.ended = False
        self._on_end = on_end
        self._grace: asyncio.Task[None] | None = None
        self._tasks = [asyncio.create_task(self._read(fd)) for fd in self._outputs()]
        self._tasks.append(asyncio.create_task(self._idle()))

    def apply(self, grant: TerminalGrant) -> None:
        """The latest token's timers (each reattach comes with a fresh token)."""
        if grant.grace_s is not None:
            self.grace_s = min(grant.grace_s, self.settings.max_grace_s)
        self.idle_s = grant.idle_s or None

    def _outputs(self) -> list[int | None]:
        return list(self.process.outputs) if isinstance(self.process, PipeProcess) else [None]

    # -- output ---------------------------------------------------------------------------

    async def _read(self, fd: int | None) -> None:
        stream = protocol.STDERR if self.piped and fd == self._outputs()[1] else protocol.STDOUT
        while True:
            chunk = await (read_fd(fd) if fd is not None else self.process.read())
            if not chunk:
                break
            if self.frames is not None:
                # A pipe session keeps its frames whole; the bounded queue is its hold-back.
                await self.frames.put(protocol.exec_frame(stream, chunk))
                continue
            await self._hold_back()
            self.ring.append(chunk)
            self.progress.set()
        if fd == self._outputs()[0]:
            await self._finish()

    async def _hold_back(self) -> None:
        """Wait while paused, or while the attached socket is MAX_AHEAD behind."""
        while True:
            a = self.attachment
            if a is None or (self.running.is_set() and self.ring.end - a.sent < MAX_AHEAD):
                return
            self.progress.clear()
            await self.progress.wait()

    async def _finish(self) -> None:
        if self.piped:  # stderr drains too
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._tasks[1]), 2)
        code = None
        for _ in range(100):  # the output ended: the process is exiting
            if (code := self.process.exit_code()) is not None:
                break
            await asyncio.sleep(0.02)
        if self.allocation_gone():
            # The release killed the allocation's processes, the shell among them.
            await self.end(*ALLOCATION_RELEASED)
            return
        a = self.attachment
        if a is not None:
            await self._flush(a)
            await a.control("exit", code=code)
        await self.end("exited", "the shell exited", NORMAL_CLOSURE)

    async def _flush(self, a: Attachment, within: float = 2.0) -> None:
        deadline = time.monotonic() + within
        while (
            (a.sent < self.ring.end or (self.frames is not None and not self.frames.empty()))
            and time.monotonic() < deadline
            and not a.gone.is_set()
        ):
            self.progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.progress.wait(), 0.1)

    async def send_output(self, a: Attachment) -> None:
        """The attachment's sender: replay, then live output, until it is replaced."""
        while self.attachment is a:
            if self.frames is not None:
                await a.socket.send_bytes(await self.frames.get())
                self.progress.set()
                continue
            if a.sent < self.ring.end:
                start, data = self.ring.read(a.sent, _SEND_CHUNK)
                await a.socket.send_bytes(data)
                a.sent = start + len(data)
                self.progress.set()
                continue
            self.progress.clear()
            await self.progress.wait()

    # -- input ----------------------------------------------------------------------------

    async def take_input(self, a: Attachment) -> None:
        while self.attachment is a:
            message = await a.socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes"):
                self.last_input = time.monotonic()
                await self.process.write(message["bytes"])
                continue
            if not message.get("text"):
                continue
            try:
                control = protocol.decode(message["text"])
            except protocol.ProtocolError:
                continue
            await self._control(a, control)

    async def _control(self, a: Attachment, control: protocol.Control) -> None:
        if (size := protocol.window_size(control)) is not None:
            self.process.resize(*size)
        elif control.type == "pause":
            self.running.clear()
        elif control.type == "resume":
            self.running.set()
            self.progress.set()
        elif control.type == "ping":
            await a.control("pong")
        elif control.type == "eof":
            await self.process.end_input()
        elif control.type in ("terminate", "close"):
            reason = str(control.get("reason") or "closed")
            await self.end(reason, str(control.get("message") or "the session was ended"))

    # -- attach, detach, end --------------------------------------------------------------

    async def attach(self, a: Attachment) -> None:
        previous = self.attachment
        if previous is not None:
            await previous.control(
                "closing", reason="taken_over", message="the session was attached elsewhere"
            )
            await previous.close(NORMAL_CLOSURE, "taken over by another connection")
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        resumed = self.ring.end > 0
        a.sent = self.ring.start
        self.attachment = a
        self.running.set()
        self.last_input = time.monotonic()
        await a.control(
            "attached", session_id=self.id, replay=self.ring.end - self.ring.start, resumed=resumed
        )
        self.progress.set()

    def detach(self, a: Attachment) -> None:
        if self.attachment is not a or self.ended:
            return
        self.attachment = None
        self.running.set()
        self.progress.set()
        if self.piped or self.grace_s <= 0:
            asyncio.get_running_loop().create_task(self.end("detached", "the connection was lost"))
            return
        self._grace = asyncio.get_running_loop().create_task(self._expire())

    async def _expire(self) -> None:
        await asyncio.sleep(self.grace_s)
        await self.end("expired", "nobody reattached within the grace window")

    async def _idle(self) -> None:
        while not self.ended:
            await asyncio.sleep(1.0 if self.idle_s is None else min(1.0, self.idle_s / 4))
            if self.idle_s is None or self.attachment is None:
                continue
            if time.monotonic() - self.last_input >= self.idle_s:
                await self.end(
                    "idle_timeout", f"no input for {self.idle_s:g} s: the session was closed"
                )

    async def end(self, reason: str, message: str, code: int = NORMAL_CLOSURE) -> None:
        """End the session (once): tell the attached client, kill the process. The
        teardown runs in its own task, so a caller cancelled meanwhile (the attachment
        that asked for it) cannot cut it short."""
        if self.ended:
            return
        self.ended = True
        teardown = asyncio.get_running_loop().create_task(self._teardown(reason, message, code))
        await asyncio.shield(teardown)

    async def _teardown(self, reason: str, message: str, code: int) -> None:
        a, self.attachment = self.attachment, None
        if a is not None:
            if reason != "exited":
                await a.control("closing", reason=reason, message=message, reattach=False)
            await a.close(code, message[:120])
        for task in (*self._tasks, self._grace):
            if task is not None:
                task.cancel()
        await asyncio.to_thread(self.process.close)
        self._on_end(self)
        log.info(
            "terminal session ended",
            extra={"fields": {"allocation_id": self.allocation_id, "reason": reason}},
        )


class TerminalService:
    """Opens shells for verified session tokens, into allocations this node runs."""

    def __init__(
        self,
        settings: TerminalSettings,
        verifier: SessionTokenVerifier | None,
        reconciler: Reconciler,
        workspaces: Path,
    ) -> None:
        self.settings = settings
        self.verifier = verifier
        self.reconciler = reconciler
        self.workspaces = workspaces
        self.sessions: dict[str, TerminalSession] = {}
        self._watcher: asyncio.Task[None] | None = None

    def running(self, allocation_id: str) -> bool:
        w = self.reconciler.workloads.get(allocation_id)
        return w is not None and w.alive()

    def spawn(self, grant: TerminalGrant) -> PtyProcess | PipeProcess:
        workload = self.reconciler.workloads[grant.allocation_id]
        options = self.reconciler.process_options(grant.allocation_id, workload.devices)
        if "cwd" not in options:
            cwd = self.settings.cwd or self.workspaces / grant.allocation_id
            cwd.mkdir(parents=True, exist_ok=True)
            options["cwd"] = cwd
        options["env"] = {
            **options["env"],
            "TERM": "xterm-256color",
            "SHELL": self.settings.shell_path,
        }
        if grant.mode == "exec":
            assert grant.command is not None
            argv = [self.settings.shell_path, "-c", grant.command]
            return PtyProcess(argv, options) if grant.pty else PipeProcess(argv, options)
        return PtyProcess([self.settings.shell_path, "-l"], options)

    async def serve(self, socket: WebSocket[Any, Any, Any], allocation_id: str) -> None:
        await socket.accept()
        grant = await self._authorize(socket, allocation_id, modes=("shell", "exec"))
        if isinstance(grant, str):
            log.info("terminal refused", extra={"fields": {"reason": grant}})
            await socket.close(POLICY_VIOLATION, grant[:120])
            return
        session = self.sessions.get(grant.session_id)
        if session is not None:
            refused = _mismatch(session, grant)
            if refused:
                await socket.close(POLICY_VIOLATION, refused)
                return
            session.apply(grant)
        else:
            try:
                process = await asyncio.to_thread(self.spawn, grant)
            except OSError as exc:
                log.error("terminal did not start", extra={"fields": {"error": repr(exc)}})
                await socket.close(POLICY_VIOLATION, "the shell could not be started")
                return
            session = TerminalSession(
                grant,
                process,
                self.settings,
                self._ended,
                lambda: not self.running(grant.allocation_id),
            )
            self.sessions[session.id] = session
            self._watch()
            log.info(
                "terminal opened",
                extra={"fields": {"allocation_id": allocation_id, "user": grant.user}},
            )
        await self._attached(session, Attachment(socket))

    async def _attached(self, session: TerminalSession, a: Attachment) -> None:
        await session.attach(a)
        tasks = [
            asyncio.create_task(session.send_output(a)),
            asyncio.create_task(session.take_input(a)),
            asyncio.create_task(a.gone.wait()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            session.detach(a)
        with contextlib.suppress(Exception):
            await a.socket.close(a.close_code, a.close_reason)

    def _ended(self, session: TerminalSession) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]

    def _watch(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch_allocations())

    async def _watch_allocations(self) -> None:
        # A session never outlives its allocation. (The token only opens the session: how
        # long it may stay open is terminal-gateway's call, which ends it with `terminate`.)
        while self.sessions:
            await asyncio.sleep(_WATCH_INTERVAL_S)
            for session in list(self.sessions.values()):
                if not self.running(session.allocation_id):
                    await session.end(*ALLOCATION_RELEASED)

    async def close_all(self) -> None:
        for session in list(self.sessions.values()):
            await session.end("agent_stopped", "the node agent stopped")

    async def _authorize(
        self, socket: WebSocket[Any, Any, Any], allocation_id: str, modes: tuple[str, ...]
    ) -> TerminalGrant | str:
        """The grant, or why the caller is refused."""
        if self.verifier is None:
            return "terminal access is not configured on this node"
        scheme, _, token = (socket.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "a terminal session token is required"
        try:
            grant = await self.verifier.verify(token.strip(), socket.headers.get(RELAY_HEADER))
        except InvalidToken as exc:
            return str(exc.detail)
        if grant.allocation_id != allocation_id:
            return "the session token is for another allocation"
        if grant.mode not in modes:
            return "the session token is for another kind of session"
        if not self.running(allocation_id):
            return "the allocation is not running on this node"
        known_tenant = self.reconciler.workloads[allocation_id].tenant_id
        if known_tenant is not None and known_tenant != grant.tenant:
            return "the session token is for another tenant"
        return grant

    # -- port forwarding --------------------------------------------------------------------

    async def forward(self, socket: WebSocket[Any, Any, Any], allocation_id: str) -> None:
        await socket.accept()
        grant = await self._authorize(socket, allocation_id, modes=("forward",))
        if isinstance(grant, str):
            await socket.close(POLICY_VIOLATION, grant[:120])
            return
        assert grant.port is not None
        account = None
        if self.reconciler.accounts is not None:
            account = self.reconciler.accounts.account(allocation_id)
        if account is not None and not listens(grant.port, account.uid):
            await socket.close(
                POLICY_VIOLATION, f"no process of the allocation listens on port {grant.port}"
            )
            return
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", grant.port)
        except OSError:
            await socket.close(POLICY_VIOLATION, f"nothing answers on port {grant.port}")
            return
        tasks = [
            asyncio.create_task(_socket_to_tcp(socket, writer)),
            asyncio.create_task(_tcp_to_socket(reader, socket)),
            asyncio.create_task(self._until_stopped(allocation_id)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()
        with contextlib.suppress(Exception):
            await socket.close(NORMAL_CLOSURE, "forwarding ended")

    async def _until_stopped(self, allocation_id: str) -> None:
        while self.running(allocation_id):  # noqa: ASYNC110 - the reconciler has no event
            await asyncio.sleep(_WATCH_INTERVAL_S)


def _mismatch(session: TerminalSession, grant: TerminalGrant) -> str | None:
    if session.allocation_id != grant.allocation_id:
        return "the session belongs to another allocation"
    if (session.user, session.tenant) != (grant.user, grant.tenant):
        return "the session belongs to another user"
    if session.piped:
        return "a command without a terminal cannot be reattached"
    return None


def listens(port: int, uid: int, proc: Path = Path("/proc/net")) -> bool:
    """Whether a TCP socket of `uid` listens on `port` (IPv4 or IPv6)."""
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 8 or fields[3] != "0A":  # 0A: LISTEN
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port and int(fields[7]) == uid:
                return True
    return False


async def _socket_to_tcp(socket: WebSocket[Any, Any, Any], writer: asyncio.StreamWriter) -> None:
    while True:
        message = await socket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes"):
            writer.write(message["bytes"])
            await writer.drain()


async def _tcp_to_socket(reader: asyncio.StreamReader, socket: WebSocket[Any, Any, Any]) -> None:
    while chunk := await reader.read(_SEND_CHUNK):
        await socket.send_bytes(chunk)


@websocket("/v1/node/allocations/{allocation_id:str}/terminal", name="nodeTerminal")
async def terminal(socket: WebSocket[Any, Any, Any], allocation_id: str, state: State) -> None:
    """A shell in one allocation, for the holder of a terminal session token relayed by
    terminal-gateway (no principal: the token, minted after terminal-gateway authorized
    the user, and the relay assertion are the authorization)."""
    service: TerminalService = state.terminal
    with contextlib.suppress(WebSocketDisconnect):
        await service.serve(socket, allocation_id)


@websocket("/v1/node/allocations/{allocation_id:str}/forward", name="nodeForward")
async def forward(socket: WebSocket[Any, Any, Any], allocation_id: str, state: State) -> None:
    """A TCP connection to one of the allocation's ports on this node (ssh -L)."""
    service: TerminalService = state.terminal
    with contextlib.suppress(WebSocketDisconnect):
        await service.forward(socket, allocation_id)
