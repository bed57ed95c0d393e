"""The PTY stream terminal-gateway relays a browser terminal to.

`GET /v1/node/allocations/{allocation_id}/terminal` (WebSocket). The caller sends
`Authorization: Bearer <terminal session token>` (see session_tokens.py) on the upgrade
request. The agent accepts the socket, verifies the token and that the allocation is one
it runs now, and otherwise closes with 1008 (policy violation) and the reason; no shell is
started for a refused caller.

Framing once open:
- binary frames, both ways: raw terminal bytes (keystrokes in, output out);
- text frames from the client: JSON control messages; `{"type": "resize", "cols": 120,
  "rows": 40}` sets the window size (the shell gets SIGWINCH). Anything else is ignored.
- the agent closes with 1000 when the shell exits, 1008 when the allocation stops running
  here. The token only opens a session; terminal-gateway ends one by closing its relay.

The shell (GPUCLOUD_TERMINAL_SHELL, default bash or sh) runs on a fresh PTY as the leader
of its own session, with the allocation's device environment (CUDA_VISIBLE_DEVICES etc.)
and none of the agent's GPUCLOUD_* secrets; its working directory is
GPUCLOUD_TERMINAL_CWD or a per-allocation workspace under the agent's state directory.
When the socket goes away its whole process group is killed.
"""

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import shutil
import signal
import struct
import subprocess
import termios
from pathlib import Path
from typing import Any

from litestar import WebSocket, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect

from node_agent.reconcile import Reconciler, workload_environment
from node_agent.session_tokens import DEFAULT_ISSUER, SessionTokenVerifier, TerminalGrant
from platformkit.tokens import InvalidToken

log = logging.getLogger(__name__)
POLICY_VIOLATION = 1008
NORMAL_CLOSURE = 1000
_READ_CHUNK = 65536
# How often an open session re-checks that its allocation still runs here.
_WATCH_INTERVAL_S = 0.5


@dataclasses.dataclass(frozen=True)
class TerminalSettings:
    jwks_url: str | None
    issuer: str = DEFAULT_ISSUER
    shell_path: str = "/bin/sh"
    cwd: Path | None = None

    @classmethod
    def from_env(cls) -> "TerminalSettings":
        env = os.environ.get
        cwd = env("GPUCLOUD_TERMINAL_CWD")
        return cls(
            jwks_url=env("GPUCLOUD_TERMINAL_JWKS_URL") or None,
            issuer=env("GPUCLOUD_TERMINAL_TOKEN_ISSUER") or DEFAULT_ISSUER,
            shell_path=env("GPUCLOUD_TERMINAL_SHELL") or shutil.which("bash") or "/bin/sh",
            cwd=Path(cwd) if cwd else None,
        )


def _take_controlling_terminal() -> None:
    # Runs in the child after setsid (start_new_session): the PTY on fd 0 becomes its
    # controlling terminal, so Ctrl-C, job control and SIGWINCH reach the shell.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def window_size(cols: int, rows: int) -> bytes:
    return struct.pack("HHHH", rows, cols, 0, 0)


class PtyProcess:
    """A process on a pseudo-terminal, read and written without blocking the loop."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        master, slave = os.openpty()
        try:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, window_size(80, 24))
            self.process = subprocess.Popen(
                argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_take_controlling_terminal,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        self.pid = self.process.pid

    async def read(self) -> bytes:
        """The next chunk of output; b"" once the terminal is closed (the shell exited)."""
        while True:
            try:
                return os.read(self.master, _READ_CHUNK)
            except BlockingIOError:
                pass
            except OSError:  # EIO: no process holds the slave side any more
                return b""
            await self._ready(asyncio.get_running_loop().add_reader, "remove_reader")

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.master, view) :]
            except BlockingIOError:
                await self._ready(asyncio.get_running_loop().add_writer, "remove_writer")

    async def _ready(self, add: Any, remove: str) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        add(self.master, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            getattr(loop, remove)(self.master)

    def resize(self, cols: int, rows: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, window_size(cols, rows))

    def close(self) -> None:
        """Kill the whole process group (the shell and whatever it started)."""
        for sig in (signal.SIGHUP, signal.SIGKILL):
            with contextlib.suppress(OSError):
                os.killpg(self.pid, sig)
            try:
                self.process.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(OSError):
            os.close(self.master)


def parse_control(text: str) -> tuple[int, int] | None:
    """A resize message as (cols, rows); None for anything else or out-of-range sizes."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("type") != "resize":
        return None
    cols, rows = message.get("cols"), message.get("rows")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (cols, rows)):
        return None
    assert isinstance(cols, int) and isinstance(rows, int)
    if not (1 <= cols <= 1000 and 1 <= rows <= 1000):
        return None
    return cols, rows


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
        self.sessions: dict[str, PtyProcess] = {}

    def running(self, allocation_id: str) -> bool:
        w = self.reconciler.workloads.get(allocation_id)
        return w is not None and w.alive()

    def open(self, allocation_id: str) -> PtyProcess:
        workload = self.reconciler.workloads[allocation_id]
        cwd = self.settings.cwd or self.workspaces / allocation_id
        cwd.mkdir(parents=True, exist_ok=True)
        env = {
            **workload_environment(allocation_id, workload.devices),
            "TERM": "xterm-256color",
            "SHELL": self.settings.shell_path,
        }
        return PtyProcess([self.settings.shell_path], env, cwd)

    async def serve(self, socket: WebSocket[Any, Any, Any], allocation_id: str) -> None:
        await socket.accept()
        grant = await self._authorize(socket, allocation_id)
        if isinstance(grant, str):
            log.info("terminal refused", extra={"fields": {"reason": grant}})
            await socket.close(POLICY_VIOLATION, grant)
            return
        pty = await asyncio.to_thread(self.open, allocation_id)
        session_id = f"{allocation_id}/{pty.pid}"
        self.sessions[session_id] = pty
        log.info(
            "terminal opened",
            extra={"fields": {"allocation_id": allocation_id, "user": grant.user}},
        )
        tasks = [
            asyncio.create_task(self._output(socket, pty)),
            asyncio.create_task(self._input(socket, pty)),
            asyncio.create_task(self._watch(allocation_id)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            close = next(iter(done)).result()
        except Exception as exc:  # a broken socket ends the session like a disconnect
            log.info("terminal relay ended", extra={"fields": {"error": repr(exc)}})
            close = None
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.sessions.pop(session_id, None)
            await asyncio.to_thread(pty.close)
            log.info("terminal closed", extra={"fields": {"allocation_id": allocation_id}})
        if close is not None:
            with contextlib.suppress(Exception):
                await socket.close(*close)

    async def _authorize(
        self, socket: WebSocket[Any, Any, Any], allocation_id: str
    ) -> TerminalGrant | str:
        """The grant, or why the caller is refused."""
        if self.verifier is None:
            return "terminal access is not configured on this node"
        scheme, _, token = (socket.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "a terminal session token is required"
        try:
            grant = await self.verifier.verify(token.strip())
        except InvalidToken as exc:
            return str(exc.detail)
        if grant.allocation_id != allocation_id:
            return "the session token is for another allocation"
        if not self.running(allocation_id):
            return "the allocation is not running on this node"
        known_tenant = self.reconciler.workloads[allocation_id].tenant_id
        if known_tenant is not None and known_tenant != grant.tenant:
            return "the session token is for another tenant"
        return grant

    async def _output(self, socket: WebSocket[Any, Any, Any], pty: PtyProcess) -> tuple[int, str]:
        while chunk := await pty.read():
            await socket.send_bytes(chunk)
        return NORMAL_CLOSURE, "the shell exited"

    async def _input(self, socket: WebSocket[Any, Any, Any], pty: PtyProcess) -> None:
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return None
            if message.get("bytes"):
                await pty.write(message["bytes"])
            elif message.get("text"):
                size = parse_control(message["text"])
                if size is not None:
                    pty.resize(*size)

    async def _watch(self, allocation_id: str) -> tuple[int, str]:
        # A session never outlives its allocation. (The token only opens the session: how
        # long it may stay open is terminal-gateway's call, which ends it by closing.)
        while True:
            await asyncio.sleep(_WATCH_INTERVAL_S)
            if not self.running(allocation_id):
                return POLICY_VIOLATION, "the allocation is no longer running"


@websocket("/v1/node/allocations/{allocation_id:str}/terminal", name="nodeTerminal")
async def terminal(socket: WebSocket[Any, Any, Any], allocation_id: str, state: State) -> None:
    """A shell in one allocation, for the holder of a terminal session token (no principal:
    the session token, minted by terminal-gateway after it authorized the user, is the
    authorization)."""
    service: TerminalService = state.terminal
    try:
        await service.serve(socket, allocation_id)
    except WebSocketDisconnect:
        pass
