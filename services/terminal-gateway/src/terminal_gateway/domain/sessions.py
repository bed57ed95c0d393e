"""The terminal session state machine: the one place a session's state changes.

```
minted -> open -> detached -> open ... -> closed | expired | revoked
minted -> expired          (the token was not used within its lifetime)
minted -> closed           (the node refused the first attach)
open -> open               (a reattach took over a connection that had not noticed its drop)
detached -> expired        (nobody reattached within the grace window)
minted | open | detached -> revoked   (allocation released, role or membership revoked,
                                       tenant suspended, a kill by an admin or operator)
```
`closed`, `expired` and `revoked` are final. Every transition is an event
(`terminal.session.<state entered>`); an illegal one raises IllegalTransition.
"""

from __future__ import annotations

import enum


class SessionState(enum.StrEnum):
    MINTED = "minted"
    OPEN = "open"
    DETACHED = "detached"
    CLOSED = "closed"
    EXPIRED = "expired"
    REVOKED = "revoked"


LIVE = frozenset({SessionState.MINTED, SessionState.OPEN, SessionState.DETACHED})
FINAL = frozenset({SessionState.CLOSED, SessionState.EXPIRED, SessionState.REVOKED})

_ALLOWED: dict[SessionState, frozenset[SessionState]] = {
    SessionState.MINTED: frozenset(
        {SessionState.OPEN, SessionState.EXPIRED, SessionState.CLOSED, SessionState.REVOKED}
    ),
    SessionState.OPEN: frozenset(
        {SessionState.OPEN, SessionState.DETACHED, SessionState.CLOSED, SessionState.REVOKED}
    ),
    SessionState.DETACHED: frozenset(
        {SessionState.OPEN, SessionState.CLOSED, SessionState.EXPIRED, SessionState.REVOKED}
    ),
    SessionState.CLOSED: frozenset(),
    SessionState.EXPIRED: frozenset(),
    SessionState.REVOKED: frozenset(),
}

EVENT_TYPES = {
    state: f"terminal.session.{'opened' if state == 'open' else state}" for state in SessionState
}
POLICY_CHANGED = "terminal.policy.changed"


class Via(enum.StrEnum):
    BROWSER = "browser"
    SSH = "ssh"


class Kind(enum.StrEnum):
    SHELL = "shell"
    EXEC = "exec"
    FORWARD = "forward"


class Reason(enum.StrEnum):
    """Why a session detached or ended (the `reason` of its event and `closing` message)."""

    EXITED = "exited"
    CLOSED = "closed"
    IDLE_TIMEOUT = "idle_timeout"
    RECORDING_FAILED = "recording_failed"
    CONNECTION_LOST = "connection_lost"
    NODE_UNREACHABLE = "node_unreachable"
    NODE_REFUSED = "node_refused"
    RELAY_LOST = "relay_lost"
    TOKEN_UNUSED = "token_unused"
    GRACE_PASSED = "grace_passed"
    ALLOCATION_RELEASED = "allocation_released"
    MEMBERSHIP_REVOKED = "membership_revoked"
    TENANT_SUSPENDED = "tenant_suspended"
    KILLED = "killed"


# What a user is told when the platform ends their session.
MESSAGES = {
    Reason.ALLOCATION_RELEASED: "the allocation was released",
    Reason.MEMBERSHIP_REVOKED: "your access to this project was revoked",
    Reason.TENANT_SUSPENDED: "the tenant is suspended",
    Reason.KILLED: "an administrator ended this session",
    Reason.RECORDING_FAILED: "the session recording could not be written",
    Reason.IDLE_TIMEOUT: "the session was idle too long",
    Reason.GRACE_PASSED: "nobody reattached within the grace window",
}


class IllegalTransition(Exception):
    def __init__(self, current: SessionState, target: SessionState) -> None:
        super().__init__(f"a session cannot go from {current} to {target}")
        self.current, self.target = current, target


def transition(current: SessionState | str, target: SessionState | str) -> str:
    """The event type of moving from `current` to `target`, or IllegalTransition."""
    current, target = SessionState(current), SessionState(target)
    if target not in _ALLOWED[current]:
        raise IllegalTransition(current, target)
    return EVENT_TYPES[target]


def ending_state(reason: str) -> SessionState:
    """The final state an ending for `reason` lands in."""
    if reason in (Reason.GRACE_PASSED, Reason.TOKEN_UNUSED, "expired"):
        return SessionState.EXPIRED
    if reason in (
        Reason.ALLOCATION_RELEASED,
        Reason.MEMBERSHIP_REVOKED,
        Reason.TENANT_SUSPENDED,
        Reason.KILLED,
    ):
        return SessionState.REVOKED
    return SessionState.CLOSED
