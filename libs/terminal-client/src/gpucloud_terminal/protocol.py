"""The terminal wire protocol, spoken on every hop of a terminal session.

WebSocket frames:

- **binary**: terminal bytes. Client to server: keystrokes (stdin). Server to client: the
  PTY's output. An exec session without a PTY (`ssh host cmd`) prefixes every server frame
  with one stream byte (`STDOUT` or `STDERR`) so the two outputs stay apart.
- **text**: one JSON object, a control message with a `type` (below). Unknown types are
  ignored by every receiver, so a newer sender never breaks an older receiver.

Client -> server: `resize {cols, rows}`, `pause`, `resume` (flow control, see
`FlowControl`), `ping` (answered by `pong`; browsers cannot send WebSocket pings), `eof`
(close the exec's stdin), `close` (end the session for good instead of detaching).
Relay -> agent only: `terminate {reason, message}` (terminal-gateway ends the session).

Server -> client: `attached {session_id, replay, resumed}` first, then `replay` bytes of
scrollback as binary frames, then live output; `exit {code}` when the process ended;
`closing {reason, message, reattach}` just before the server closes the socket; `pong`.

Close codes: 1000 normal; 1008 refused by the node agent (the reason says why); 4000 +
an HTTP status for terminal-gateway's refusals (4401 no or bad token, 4403 not allowed,
4404 no such session, 4409 the session cannot be attached in its state). A socket that
drops (1006), or a `closing` with `reattach: true`, is worth a reattach (`Reattach`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

SUBPROTOCOL = "gpucloud.terminal.v1"
# A browser cannot set headers on a WebSocket: it offers the token as a second
# subprotocol, "bearer.<token>" (the server never echoes that one back).
BEARER_PREFIX = "bearer."

STDOUT, STDERR = 1, 2

NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
ABNORMAL_CLOSURE = 1006
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
SERVICE_RESTART = 1012
UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT = 4401, 4403, 4404, 4409

MAX_DIMENSION = 1000

# Flow control watermarks (bytes received but not yet drawn by the terminal). xterm.js
# documents the same scheme: pause above HIGH, resume below LOW.
HIGH_WATERMARK = 512 * 1024
LOW_WATERMARK = 64 * 1024
# What a relay hop may hold for one session before it stops reading from upstream.
MAX_BUFFERED = 1024 * 1024
# Keepalive: every hop pings at least this often, so idle proxies keep the socket.
KEEPALIVE_S = 20.0


class ProtocolError(ValueError):
    """A control message that is not one this protocol defines."""


@dataclasses.dataclass(frozen=True)
class Control:
    type: str
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


def encode(type_: str, **fields: Any) -> str:
    """A control message as the text of one frame."""
    return json.dumps({"type": type_, **{k: v for k, v in fields.items() if v is not None}})


def decode(text: str) -> Control:
    """One text frame as a control message; ProtocolError when it is not one."""
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise ProtocolError("a control frame is one JSON object") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("a control frame needs a string `type`")
    kind = message.pop("type")
    return Control(kind, message)


def resize(cols: int, rows: int) -> str:
    return encode("resize", cols=cols, rows=rows)


def window_size(control: Control) -> tuple[int, int] | None:
    """(cols, rows) of a valid resize message, None for anything else."""
    if control.type != "resize":
        return None
    cols, rows = control.get("cols"), control.get("rows")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (cols, rows)):
        return None
    assert isinstance(cols, int) and isinstance(rows, int)
    if not (1 <= cols <= MAX_DIMENSION and 1 <= rows <= MAX_DIMENSION):
        return None
    return cols, rows


def exec_frame(stream: int, data: bytes) -> bytes:
    return bytes((stream,)) + data


def split_exec_frame(frame: bytes) -> tuple[int, bytes]:
    if not frame or frame[0] not in (STDOUT, STDERR):
        raise ProtocolError("an exec frame starts with its stream byte")
    return frame[0], frame[1:]


def bearer_subprotocol(token: str) -> str:
    return BEARER_PREFIX + token


def token_from_subprotocols(offered: list[str]) -> str | None:
    for item in offered:
        if item.startswith(BEARER_PREFIX) and len(item) > len(BEARER_PREFIX):
            return item[len(BEARER_PREFIX) :]
    return None


class FlowControl:
    """The client's side of flow control: count what arrived and what the terminal has
    drawn; `pause` once more than `high` is waiting, `resume` once it is back under `low`.
    The server stops reading the PTY while paused (the shell blocks on its writes), so a
    fast producer cannot flood a slow screen. Returns the control frame to send, or None."""

    def __init__(self, high: int = HIGH_WATERMARK, low: int = LOW_WATERMARK) -> None:
        if not 0 <= low < high:
            raise ValueError("need 0 <= low < high")
        self.high, self.low = high, low
        self.pending = 0
        self.paused = False

    def received(self, n: int) -> str | None:
        self.pending += n
        if not self.paused and self.pending > self.high:
            self.paused = True
            return encode("pause")
        return None

    def consumed(self, n: int) -> str | None:
        self.pending = max(0, self.pending - n)
        if self.paused and self.pending < self.low:
            self.paused = False
            return encode("resume")
        return None


# Reasons a server gives in `closing` after which reattaching cannot help.
FINAL_REASONS = frozenset(
    {
        "exited",
        "closed",
        "idle_timeout",
        "revoked",
        "allocation_released",
        "tenant_suspended",
        "membership_revoked",
        "killed",
        "recording_failed",
        "expired",
        "grace_passed",
        "node_refused",
        "agent_stopped",
    }
)
# Close codes of a connection that went away rather than ended: reattach.
DROPPED = frozenset({ABNORMAL_CLOSURE, GOING_AWAY, INTERNAL_ERROR, SERVICE_RESTART})


@dataclasses.dataclass
class Reattach:
    """When and how soon to reattach to a session after its socket closed: a drop (no
    close frame, a restarting server) or a `closing` that says `reattach: true` is worth
    another try with a fresh token, with a growing pause, until the server's grace window
    (`give_up_after_s`) has passed; an exit, a refusal or a final reason is not."""

    give_up_after_s: float = 300.0
    first_delay_s: float = 0.25
    max_delay_s: float = 5.0

    def worth_it(self, close_code: int | None, last_closing: Control | None) -> bool:
        if last_closing is not None:
            if last_closing.get("reason") in FINAL_REASONS:
                return False
            if last_closing.get("reattach") is True:
                return True
        if close_code is None:
            return True
        return close_code in DROPPED

    def delays(self) -> list[float]:
        """The pauses before each try, adding up to at most `give_up_after_s`."""
        out, delay, total = [], self.first_delay_s, 0.0
        while total + delay <= self.give_up_after_s:
            out.append(delay)
            total += delay
            delay = min(delay * 2, self.max_delay_s)
        return out
