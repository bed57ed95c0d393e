"""The relay: one client end (a browser's WebSocket through the gateway, or an SSH channel)
to the node agent's PTY stream, recorded on the way.

Frames pass as they come (gpucloud_terminal.protocol): terminal bytes as binary frames,
control messages as text. Nothing is buffered beyond one frame per direction in flight
plus the WebSocket library's small queue (4 frames of at most 64 KiB from the agent), so a
session holds well under MAX_BUFFERED (1 MiB) here; a slow client slows the agent's reads
of the PTY (TCP backpressure), and `pause`/`resume` from the client stop them outright.

How a relay ends decides the session's next state (app.sessions):
- the client went away -> `detached` (the agent keeps the shell for the grace window);
- the agent closed after `exit` or `closing` (idle timeout, allocation released ...) ->
  the ending that reason names; `closing: taken_over` -> nothing (another relay has it);
- the agent connection dropped -> `detached` and the client is told to reattach;
- a revocation (a NOTIFY from whoever revoked) -> `terminate` to the agent, the reason to
  the client, `revoked`;
- the recording failed -> `terminate`, `closed` with `recording_failed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from typing import Any, Protocol

import jwt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from gpucloud_terminal import protocol
from gpucloud_terminal.protocol import Control
from terminal_gateway.app.recording import Recorder, RecordingFailed
from terminal_gateway.app.sessions import SessionService
from terminal_gateway.domain.sessions import MESSAGES, Reason

log = logging.getLogger(__name__)
RELAY_HEADER = "X-Terminal-Relay"
AGENT_OPEN_TIMEOUT_S = 10.0


class ClientEnd(Protocol):
    """The user's side of a relayed session."""

    async def receive(self) -> bytes | Control | None:
        """The next keystrokes or control message; None once the client is gone."""

    async def send_bytes(self, data: bytes) -> None: ...

    async def send_control(self, type_: str, **fields: Any) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


def agent_ws_url(agent_url: str, allocation_id: uuid.UUID, what: str = "terminal") -> str:
    base = agent_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return f"{base}/v1/node/allocations/{allocation_id}/{what}"


@contextlib.asynccontextmanager
async def agent_connection(
    service: SessionService, node: Any, allocation_id: uuid.UUID, token: str, what: str = "terminal"
):
    """A WebSocket to the node agent carrying the session token and our relay assertion."""
    claims_jti = _jti(token)
    headers = {
        "Authorization": f"Bearer {token}",
        RELAY_HEADER: service.keys.relay_assertion(node["name"], claims_jti),
    }
    async with connect(
        agent_ws_url(node["agent_url"], allocation_id, what),
        additional_headers=headers,
        compression=None,
        max_size=4 * 1024 * 1024,
        max_queue=4,
        ping_interval=protocol.KEEPALIVE_S,
        open_timeout=AGENT_OPEN_TIMEOUT_S,
    ) as ws:
        yield ws


def _jti(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


class RelayRegistry:
    """The relays this replica runs, by session; woken by NOTIFY (watch.py)."""

    def __init__(self) -> None:
        self.relays: dict[uuid.UUID, set[Relay]] = {}

    def add(self, relay: Relay) -> None:
        self.relays.setdefault(relay.session_id, set()).add(relay)

    def remove(self, relay: Relay) -> None:
        found = self.relays.get(relay.session_id)
        if found is not None:
            found.discard(relay)
            if not found:
                del self.relays[relay.session_id]

    def poke(self, session_id: uuid.UUID) -> None:
        for relay in self.relays.get(session_id, ()):
            relay.poked.set()

    def instances(self) -> list[str]:
        return [relay.instance for relays in self.relays.values() for relay in relays]


@dataclasses.dataclass
class _Seen:
    closing: Control | None = None
    exit_code: int | None = None


class Relay:
    def __init__(
        self,
        service: SessionService,
        registry: RelayRegistry,
        session: Any,
        node: Any,
        token: str,
        client: ClientEnd,
        *,
        instance: str,
        piped: bool = False,
        size: tuple[int, int] = (80, 24),
    ) -> None:
        self.service = service
        self.registry = registry
        self.session = session
        self.session_id: uuid.UUID = session["id"]
        self.node = node
        self.token = token
        self.client = client
        self.instance = instance
        self.piped = piped
        self.size = size
        self.poked = asyncio.Event()
        self.seen = _Seen()
        self.recorder = Recorder(service.db, self.session_id, session["opened_at"])

    async def run(self) -> str:
        """Relay until the session detaches or ends; returns the reason."""
        self.registry.add(self)
        outcome = Reason.RELAY_LOST.value
        try:
            async with agent_connection(
                self.service, self.node, self.session["allocation_id"], self.token
            ) as agent:
                outcome = await self._relay(agent)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            log.warning("node agent unreachable", extra={"fields": {"error": repr(exc)}})
            outcome = await self._unreachable()
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self.service.detach(self.session_id, self.instance, Reason.RELAY_LOST)
                )
            raise
        finally:
            self.registry.remove(self)
        return outcome

    async def _unreachable(self) -> str:
        first = self.session["attachments"] <= 1
        if first:
            await self.service.end(self.session_id, Reason.NODE_REFUSED.value, self.instance)
        else:
            await self.service.detach(self.session_id, self.instance, Reason.NODE_UNREACHABLE)
        await self._tell(Reason.NODE_UNREACHABLE, "the node cannot be reached", reattach=not first)
        await self.client.close(protocol.INTERNAL_ERROR, "node unreachable")
        return Reason.NODE_UNREACHABLE.value

    async def _tell(self, reason: str, message: str, reattach: bool = False) -> None:
        with contextlib.suppress(Exception):
            await self.client.send_control(
                "closing", reason=str(reason), message=message, reattach=reattach
            )

    async def _relay(self, agent: ClientConnection) -> str:
        title = f"gpucloud session {self.session_id} (allocation {self.session['allocation_id']})"
        try:
            await self.recorder.start(*self.size, title)
        except Exception as exc:
            self.recorder.error = exc
            return await self._recording_failed(agent)
        up = asyncio.create_task(self._up(agent), name="relay-up")
        down = asyncio.create_task(self._down(agent), name="relay-down")
        poked = asyncio.create_task(self._watch(), name="relay-watch")
        failed = asyncio.create_task(self.recorder.failed.wait(), name="relay-recording")
        tasks = {up, down, poked, failed}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if failed in done or (down in done and isinstance(down.exception(), RecordingFailed)):
                return await self._recording_failed(agent)
            if poked in done:
                return await self._revoked(agent, poked.result())
            if up in done:
                return await self._client_gone(agent, down)
            return await self._agent_closed(agent)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- the two directions ---------------------------------------------------------------

    async def _up(self, agent: ClientConnection) -> None:
        while True:
            message = await self.client.receive()
            if message is None:
                return
            if isinstance(message, bytes):
                self.recorder.input(message)
                await agent.send(message)
                continue
            size = protocol.window_size(message)
            if size is not None:
                self.recorder.resize(*size)
                await agent.send(protocol.resize(*size))
            elif message.type in ("pause", "resume", "eof"):
                await agent.send(protocol.encode(message.type))
            elif message.type == "ping":
                await self.client.send_control("pong")
            elif message.type == "close":
                # The user ends the session for good (not a detach).
                await agent.send(
                    protocol.encode("terminate", reason="closed", message="closed by the user")
                )

    async def _down(self, agent: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in agent:
                if isinstance(message, bytes):
                    self.recorder.output(message[1:] if self.piped else message)
                    await self.recorder.room()
                    await self.client.send_bytes(message)
                    continue
                try:
                    control = protocol.decode(message)
                except protocol.ProtocolError:
                    continue
                if control.type == "closing":
                    self.seen.closing = control
                elif control.type == "exit":
                    code = control.get("code")
                    self.seen.exit_code = code if isinstance(code, int) else None
                elif control.type == "pong":
                    continue
                await self.client.send_control(control.type, **control.fields)

    async def _watch(self) -> str:
        """Until the session is revoked or taken over elsewhere (woken by NOTIFY)."""
        while True:
            await self.poked.wait()
            self.poked.clear()
            current = await self.service.state(self.session_id)
            if current is None:
                continue
            if current["revoke_reason"]:
                return str(current["revoke_reason"])
            if current["state"] != "open" or current["relay_instance"] != self.instance:
                return "taken_over"

    # -- endings ----------------------------------------------------------------------------

    async def _finish_recording(self) -> bool:
        try:
            await self.recorder.close()
        except RecordingFailed:
            return False
        return True

    async def _client_gone(self, agent: ClientConnection, down: asyncio.Task[None]) -> str:
        with contextlib.suppress(Exception):
            await agent.close(protocol.NORMAL_CLOSURE, "client detached")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(down), 2)
        recorded = await self._finish_recording()
        if self.seen.exit_code is not None or self.seen.closing is not None:
            return await self._agent_closed(agent)  # it ended (or moved on) as the client left
        if not recorded:
            await self.service.end(self.session_id, Reason.RECORDING_FAILED.value, self.instance)
            return Reason.RECORDING_FAILED.value
        await self.service.detach(self.session_id, self.instance, Reason.CONNECTION_LOST)
        return Reason.CONNECTION_LOST.value

    async def _agent_closed(self, agent: ClientConnection) -> str:
        closing = self.seen.closing
        reason = str(closing.get("reason")) if closing else None
        if reason is None and self.seen.exit_code is not None:
            reason = Reason.EXITED.value
        if reason is None and agent.close_code == protocol.POLICY_VIOLATION:
            # The node refused the session (it does not run the allocation any more ...).
            why = agent.close_reason or "the node refused the session"
            await self._finish_recording()
            await self.service.end(self.session_id, Reason.NODE_REFUSED.value, self.instance)
            await self._tell(Reason.NODE_REFUSED, why)
            await self.client.close(protocol.NORMAL_CLOSURE, Reason.NODE_REFUSED.value)
            return Reason.NODE_REFUSED.value
        if reason == "taken_over":
            await self._finish_recording()
            await self.client.close(protocol.NORMAL_CLOSURE, "taken over by another connection")
            return reason
        if reason is None:  # the connection to the node dropped
            await self._finish_recording()
            await self.service.detach(self.session_id, self.instance, Reason.NODE_UNREACHABLE)
            await self._tell(
                Reason.NODE_UNREACHABLE, "the connection to the node was lost", reattach=True
            )
            await self.client.close(protocol.INTERNAL_ERROR, "node connection lost")
            return Reason.NODE_UNREACHABLE.value
        if not await self._finish_recording():
            reason = Reason.RECORDING_FAILED.value
        await self.service.end(self.session_id, reason, self.instance)
        await self.client.close(protocol.NORMAL_CLOSURE, reason)
        return reason

    async def _revoked(self, agent: ClientConnection, reason: str) -> str:
        if reason == "taken_over":
            await self._finish_recording()
            await self._tell("taken_over", "the session was attached elsewhere")
            await self.client.close(protocol.NORMAL_CLOSURE, "taken over by another connection")
            return reason
        message = MESSAGES.get(reason, "the session was ended")  # type: ignore[call-overload]
        with contextlib.suppress(Exception):
            await agent.send(protocol.encode("terminate", reason=reason, message=message))
        await self._tell(reason, message)
        await self.client.close(protocol.NORMAL_CLOSURE, reason)
        with contextlib.suppress(Exception):
            await agent.close()
        await self._finish_recording()
        await self.service.end(self.session_id, reason, self.instance)
        return reason

    async def _recording_failed(self, agent: ClientConnection) -> str:
        reason = Reason.RECORDING_FAILED
        with contextlib.suppress(Exception):
            await agent.send(
                protocol.encode("terminate", reason=reason.value, message=MESSAGES[reason])
            )
        await self._tell(reason.value, MESSAGES[reason])
        await self.client.close(protocol.NORMAL_CLOSURE, reason.value)
        with contextlib.suppress(Exception):
            await agent.close()
        await self.service.end(self.session_id, reason.value, self.instance)
        return reason.value


async def terminate_at_node(service: SessionService, session: Any, node: Any) -> None:
    """End a detached session's shell at its node (after a revocation): attach with a token
    of our own and send `terminate`. Best effort: the node's grace window ends it anyway."""
    token, _, _ = service.keys.session_token(service.grant_for(session, node), 30)
    try:
        async with agent_connection(service, node, session["allocation_id"], token) as agent:
            async with asyncio.timeout(5):
                async for message in agent:
                    if isinstance(message, str) and protocol.decode(message).type == "attached":
                        break
                await agent.send(
                    protocol.encode("terminate", reason=session["reason"] or "revoked")
                )
                with contextlib.suppress(ConnectionClosed):
                    async for _ in agent:
                        pass
    except Exception as exc:
        log.info(
            "detached shell not terminated at its node", extra={"fields": {"error": repr(exc)}}
        )
