"""A terminal session client over WebSockets (the CLI's `gpucloud terminal`, the tests and
the benchmark use it): connect with a session token, send keystrokes and resizes, read
output with flow control, reattach after a drop.

Minting the token is not done here (that is an HTTP call to terminal-gateway with an
access token); `run_with_reattach` takes a coroutine that returns a fresh connect URL and
token for each (re)attach.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from gpucloud_terminal import protocol
from gpucloud_terminal.protocol import Control, FlowControl

Frame = bytes | Control


class Connection:
    """One open socket of a session."""

    def __init__(self, ws: ClientConnection, flow: FlowControl | None = None) -> None:
        self.ws = ws
        self.flow = flow
        self.attached: Control | None = None
        self.last_closing: Control | None = None
        self.exit_code: int | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        url: str,
        token: str,
        *,
        header: bool = True,
        flow: FlowControl | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Connection]:
        """Connect; the token goes in the Authorization header (`header=True`, the CLI) or
        as a `bearer.<token>` subprotocol (how a browser has to send it)."""
        options: dict[str, Any] = {
            "compression": None,
            "max_size": 4 * 1024 * 1024,
            "max_queue": 4,
            "ping_interval": protocol.KEEPALIVE_S,
            "open_timeout": 10,
        }
        options.update(kwargs)
        subprotocols = [protocol.SUBPROTOCOL]
        headers = {}
        if header:
            headers["Authorization"] = f"Bearer {token}"
        else:
            subprotocols.append(protocol.bearer_subprotocol(token))
        async with connect(
            url,
            additional_headers=headers,
            subprotocols=subprotocols,  # type: ignore[arg-type]
            **options,
        ) as ws:
            yield cls(ws, flow)

    async def send(self, data: bytes) -> None:
        await self.ws.send(data)

    async def control(self, type_: str, **fields: Any) -> None:
        await self.ws.send(protocol.encode(type_, **fields))

    async def resize(self, cols: int, rows: int) -> None:
        await self.ws.send(protocol.resize(cols, rows))

    async def consumed(self, n: int) -> None:
        """Tell flow control the terminal has drawn `n` more bytes."""
        if self.flow is not None and (message := self.flow.consumed(n)) is not None:
            await self.ws.send(message)

    async def frames(self) -> AsyncIterator[Frame]:
        """Output bytes and control messages until the socket closes. `attached`,
        `closing` and `exit` are also remembered on the connection."""
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    if self.flow is not None and (note := self.flow.received(len(message))):
                        await self.ws.send(note)
                    yield message
                    continue
                try:
                    control = protocol.decode(message)
                except protocol.ProtocolError:
                    continue
                if control.type == "attached":
                    self.attached = control
                elif control.type == "closing":
                    self.last_closing = control
                elif control.type == "exit":
                    code = control.get("code")
                    self.exit_code = code if isinstance(code, int) else None
                yield control
        except ConnectionClosed:
            return

    @property
    def close_code(self) -> int | None:
        """The code the server closed with; 1006 (or None) when the socket just dropped."""
        return self.ws.close_code

    @property
    def close_reason(self) -> str:
        return self.ws.close_reason or ""


Attach = Callable[[], Awaitable[tuple[str, str]]]
# Failures of one try that a later try may not see: the network, a restarting gateway (its
# handshake answered 502/503), a timeout. `attach` raises these too for a failed HTTP call.
TRANSIENT: tuple[type[BaseException], ...] = (OSError, TimeoutError, InvalidHandshake)


@dataclasses.dataclass
class Ended:
    """How a session run ended: the last connection (None if none ever opened), how many
    times it attached, and whether it gave up on reattaching (then `error` is the last
    failure, if a try failed rather than dropped)."""

    connection: Connection | None
    attachments: int = 0
    gave_up: bool = False
    error: BaseException | None = None

    @property
    def exit_code(self) -> int | None:
        return self.connection.exit_code if self.connection else None

    @property
    def closing(self) -> Control | None:
        return self.connection.last_closing if self.connection else None


async def run_with_reattach(
    attach: Attach,
    on_frame: Callable[[Frame], Awaitable[None]],
    *,
    policy: protocol.Reattach | None = None,
    pump: Callable[[Connection], Awaitable[None]] | None = None,
    on_drop: Callable[[float], Awaitable[None]] | None = None,
    flow: Callable[[], FlowControl | None] = FlowControl,
    transient: tuple[type[BaseException], ...] = TRANSIENT,
) -> Ended:
    """Attach (`attach()` gives a connect URL and a fresh token each time), hand every
    frame to `on_frame` (bytes count as drawn for flow control once it returns), run
    `pump(connection)` beside it (keystrokes, resizes; cancelled when the connection ends),
    and reattach after a drop as `policy` says: a dropped socket, a failed connect or a
    failed `attach()` (an exception in `transient`) waits the policy's next pause and tries
    again, until its grace window is spent. The pauses start over once a connection is
    attached again. Anything else `attach()` raises (the session cannot be reattached)
    propagates."""
    policy = policy or protocol.Reattach()
    delays = iter(policy.delays())
    ended = Ended(None)
    while True:
        try:
            url, token = await attach()
            async with Connection.open(url, token, flow=flow()) as connection:
                ended.connection, ended.error = connection, None
                pumping = asyncio.create_task(pump(connection)) if pump else None
                try:
                    async for frame in connection.frames():
                        if isinstance(frame, Control) and frame.type == "attached":
                            ended.attachments += 1
                            delays = iter(policy.delays())  # back in: pauses start over
                        await on_frame(frame)
                        if isinstance(frame, bytes):  # on_frame returned: it is drawn
                            await connection.consumed(len(frame))
                finally:
                    if pumping is not None:
                        pumping.cancel()
                        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                            await pumping
            if not policy.worth_it(connection.close_code, connection.last_closing):
                return ended
        except transient as exc:
            ended.error = exc  # this try failed: the same as a drop
        delay = next(delays, None)
        if delay is None:
            ended.gave_up = True
            return ended
        if on_drop is not None:
            await on_drop(delay)
        await asyncio.sleep(delay)
