"""The SSH endpoint (asyncssh): `ssh <allocation id>@<host> -p <port>`.

- **Authentication**: public keys only, the ones users registered in iam (projected from
  `iam.ssh-key.v1`); the key's SHA-256 fingerprint names the user. Passwords and keyboard-
  interactive are not offered.
- **Authorization**, exactly as the browser path (SessionService.authorize): the allocation
  (the login name) runs, in a tenant that is not suspended, and the user holds
  `workload.manage` in its project. With no access token here, the roles come from the
  membership projection of iam's events (platformkit.memberships); a user whose grant is
  older than the topic's retention is unknown to it and refused. A tenant that requires a
  second factor for terminals cannot be reached over SSH (a key is no second factor): the
  refusal says to use the browser terminal. Each refusal is said in an auth banner.
- **Channels**: a shell (`ssh host`), a command (`ssh host cmd`, on a PTY with `-t`, else on
  pipes with stdout and stderr apart and the exit status back), window changes, and local
  port forwards (`ssh -L 8888:127.0.0.1:8888 host`) to a port of the allocation on its node.
  Each shell or command is a terminal session (minted, opened, recorded, closed) relayed to
  the node agent like a browser's; each forward is a session of kind `forward` (its bytes are
  not recorded, its opening and closing are).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import asyncssh

from gpucloud_terminal import protocol
from gpucloud_terminal.protocol import Control
from platformkit.auth import Principal
from platformkit.errors import ProblemError
from terminal_gateway.api.routes import TerminalContext
from terminal_gateway.app.relay import Relay, agent_connection
from terminal_gateway.domain.sessions import Kind, Reason, Via
from terminal_gateway.store.repository import ProjectionRepository

log = logging.getLogger(__name__)
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class SshEnd:
    """An SSH channel (asyncssh process) as the relay's client end."""

    def __init__(self, process: asyncssh.SSHServerProcess[bytes], piped: bool) -> None:
        self.process = process
        self.piped = piped
        self.exit_code: int | None = None
        self._pending: list[Control] = []
        size = process.get_terminal_size()
        if process.get_terminal_type() is not None:
            self._pending.append(Control("resize", {"cols": size[0] or 80, "rows": size[1] or 24}))
        self._eof = False

    async def receive(self) -> bytes | Control | None:
        if self._pending:
            return self._pending.pop(0)
        if self._eof:
            await self.process.wait_closed()
            return None
        try:
            data = await self.process.stdin.read(65536)
        except asyncssh.TerminalSizeChanged as change:
            return Control("resize", {"cols": change.width or 80, "rows": change.height or 24})
        except (asyncssh.BreakReceived, asyncssh.SignalReceived):
            return b"\x03"
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, BrokenPipeError):
            return None
        if not data:
            self._eof = True
            return Control("eof")
        return bytes(data)

    async def send_bytes(self, data: bytes) -> None:
        if self.piped:
            stream, payload = protocol.split_exec_frame(data)
            writer = self.process.stderr if stream == protocol.STDERR else self.process.stdout
        else:
            writer, payload = self.process.stdout, data
        writer.write(payload)
        await writer.drain()

    async def send_control(self, type_: str, **fields: Any) -> None:
        if type_ == "exit" and isinstance(fields.get("code"), int):
            self.exit_code = fields["code"]
        elif type_ == "closing" and fields.get("message") and fields.get("reason") != "exited":
            newline = "\r\n" if not self.piped else "\n"
            self.process.stderr.write(f"{newline}[gpucloud] {fields['message']}{newline}".encode())

    async def close(self, code: int, reason: str) -> None:
        status = self.exit_code if self.exit_code is not None else (0 if code == 1000 else 255)
        with contextlib.suppress(Exception):
            self.process.exit(status)


class TerminalSshServer(asyncssh.SSHServer):
    """One SSH connection: who authenticated, into which allocation."""

    def __init__(self, ctx: TerminalContext, memberships: Any) -> None:
        self.ctx = ctx
        self.memberships = memberships
        self.conn: asyncssh.SSHServerConnection | None = None
        self.principal: Principal | None = None
        self.allocation_id: uuid.UUID | None = None
        self.peer: str | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else None

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        try:
            allocation_id = uuid.UUID(username)
        except ValueError:
            self._banner("log in as the allocation: ssh <allocation id>@<host>")
            return False
        fingerprint = key.get_fingerprint("sha256")
        service = self.ctx.service
        async with service.db.unit_of_work() as uow:
            projections = ProjectionRepository(uow)
            user_id = await projections.ssh_key_owner(fingerprint)
            allocation = await projections.allocation(allocation_id)
            if user_id is None or allocation is None:
                return False  # an unknown key, or no such allocation: say nothing more
            if self.memberships is not None and not self.memberships.ready:
                self._banner("terminal access is starting up; try again in a few seconds")
                return False
            principal = self._principal(user_id, allocation)
            try:
                await service.authorize(uow, principal, allocation_id)
            except ProblemError as problem:
                detail = str(problem.detail or problem.title)
                if problem.status == 401:
                    detail = (
                        "this tenant requires a second factor for terminals:"
                        " use the browser terminal"
                    )
                self._banner(f"refused: {detail}")
                return False
        self.principal, self.allocation_id = principal, allocation_id
        return True

    def _principal(self, user_id: uuid.UUID, allocation: Any) -> Principal:
        tenant, project = allocation["tenant_id"], allocation["project_id"]
        roles: frozenset[str] = frozenset()
        project_roles: frozenset[str] = frozenset()
        if self.memberships is not None:
            roles = self.memberships.roles(tenant, user_id) or frozenset()
            project_roles = self.memberships.roles(tenant, user_id, project) or frozenset()
        return Principal(
            subject=str(user_id), kind="user", tenant_id=tenant, roles=roles,
            project_roles={project: project_roles},
        )  # fmt: skip

    def _banner(self, message: str) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.send_auth_banner(f"gpucloud: {message}\n")

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> Any:
        if dest_host not in LOCAL_HOSTS or self.principal is None or not 1 <= dest_port <= 65535:
            return False
        return lambda reader, writer: self._forward(dest_port, reader, writer)

    async def _forward(self, port: int, reader: Any, writer: Any) -> None:
        """One `ssh -L` connection: a `forward` session relayed to the agent's forward stream."""
        assert self.principal is not None and self.allocation_id is not None
        service = self.ctx.service
        instance = f"{self.ctx.instance}/{uuid.uuid4().hex[:12]}"
        try:
            minted = await service.mint(
                self.principal, self.allocation_id, via=Via.SSH, kind=Kind.FORWARD,
                forward_port=port, client_address=self.peer,
            )  # fmt: skip
            session, node = await service.open(
                minted.session["id"], minted.session["token_id"], instance, self.peer
            )
        except ProblemError as problem:
            log.info("ssh forward refused", extra={"fields": {"detail": str(problem.detail)}})
            writer.close()
            return
        reason = Reason.CLOSED.value
        try:
            async with agent_connection(
                service, node, self.allocation_id, minted.token, "forward"
            ) as agent:
                await _pipe(reader, writer, agent)
        except Exception as exc:
            log.info("ssh forward ended", extra={"fields": {"error": repr(exc)}})
            reason = Reason.NODE_UNREACHABLE.value
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            await service.end(session["id"], reason, instance)


async def _pipe(reader: Any, writer: Any, agent: Any) -> None:
    async def up() -> None:
        while data := await reader.read(65536):
            await agent.send(bytes(data))

    async def down() -> None:
        async for message in agent:
            if isinstance(message, bytes):
                writer.write(message)
                await writer.drain()

    tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def handle_process(ctx: TerminalContext, process: asyncssh.SSHServerProcess[bytes]) -> None:
    """A shell or a command on an authenticated connection."""
    server: TerminalSshServer = process.channel.get_connection().get_owner()  # type: ignore[assignment]
    assert server.principal is not None and server.allocation_id is not None
    command = process.command
    pty = process.get_terminal_type() is not None
    service = ctx.service
    instance = f"{ctx.instance}/{uuid.uuid4().hex[:12]}"
    end = SshEnd(process, piped=bool(command) and not pty)
    try:
        minted = await service.mint(
            server.principal, server.allocation_id, via=Via.SSH,
            kind=Kind.EXEC if command else Kind.SHELL, command=command or None, pty=pty,
            client_address=server.peer,
        )  # fmt: skip
        session, node = await service.open(
            minted.session["id"], minted.session["token_id"], instance, server.peer
        )
    except ProblemError as problem:
        process.stderr.write(f"gpucloud: {problem.detail or problem.title}\n".encode())
        process.exit(255)
        return
    size = process.get_terminal_size()
    relay = Relay(
        service, ctx.registry, session, node, minted.token, end, instance=instance,
        piped=end.piped, size=(size[0] or 80, size[1] or 24),
    )  # fmt: skip
    await relay.run()
    await end.close(1000, "")


async def serve_ssh(ctx: TerminalContext, memberships: Any, host: str, port: int) -> None:
    """The `ssh-endpoint` job: listen until cancelled (the runtime stops its jobs before it
    closes the database); a failure to listen is the job's to retry with backoff."""
    server = await start_ssh_server(ctx, memberships, host, port)
    try:
        await asyncio.Future()  # serves until the job is cancelled
    finally:
        server.close()
        await server.wait_closed()


async def start_ssh_server(ctx: TerminalContext, memberships: Any, host: str, port: int) -> Any:
    host_key = asyncssh.import_private_key(
        ctx.service.keys.host_key_pem, ctx.service.settings.key_passphrase
    )
    return await asyncssh.create_server(
        lambda: TerminalSshServer(ctx, memberships),
        host,
        port,
        server_host_keys=[host_key],
        process_factory=lambda process: handle_process(ctx, process),
        encoding=None,
        line_editor=False,
        allow_scp=False,
        keepalive_interval=protocol.KEEPALIVE_S,
    )
