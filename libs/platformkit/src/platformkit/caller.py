"""Who is calling and from where, for the events a request causes (AU-3 "who" and "where").

`caller_middleware` gives every HTTP request a `Caller` in a context variable: the client
address (the rightmost `X-Forwarded-For` entry, the one the gateway appended from the TCP
peer it saw; entries to its left were written by the client and are not trusted; without
the header, the peer of this connection). `provide_principal` (platformkit.auth) fills in the
authenticated subject and its kind. `EventPublisher.event` (platformkit.outbox) copies the
three into the CloudEvents extension attributes `actor`, `actorkind` and `clientaddr`
(platformkit.envelope) of every event the request writes to the outbox, for every family
alike; audit records them. An event written outside a request (a consumer, a job) carries
none: the platform acted on its own.

The caller is a mutable holder set once per request, so the principal resolved in a
dependency (which litestar may resolve in another task) still reaches the handler's events.
"""

import contextvars
import dataclasses
from typing import Any

from litestar.types import ASGIApp, Receive, Scope, Send


@dataclasses.dataclass
class Caller:
    address: str | None = None
    subject: str | None = None
    kind: str | None = None


current_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "caller", default=None
)


def client_address(headers: Any, peer: Any) -> str | None:
    """The caller's address: the rightmost X-Forwarded-For entry, else the peer's host."""
    forwarded = [
        part.strip()
        for name, value in headers
        if name.lower() == b"x-forwarded-for"
        for part in value.decode("latin-1").split(",")
        if part.strip()
    ]
    if forwarded:
        return forwarded[-1][:64]
    return str(peer[0]) if peer else None


def caller_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        token = current_caller.set(Caller(client_address(scope["headers"], scope.get("client"))))
        try:
            await app(scope, receive, send)
        finally:
            current_caller.reset(token)

    return middleware


def note_principal(subject: str, kind: str) -> None:
    """Record the authenticated caller of the current request (no-op outside one)."""
    caller = current_caller.get()
    if caller is not None:
        caller.subject, caller.kind = subject, kind
