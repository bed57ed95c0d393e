"""Terminal session tokens: the only credential the agent's PTY stream accepts.

terminal-gateway mints a short-lived JWT per terminal session, bound to one user, one
allocation and one node, and signs it with its own EdDSA key (published as a JWKS at
GPUCLOUD_TERMINAL_JWKS_URL). The agent verifies it with platformkit's RFC 8725 verifier
(algorithm pinned to EdDSA, keys only from that JWKS, no `crit`) and then applies the
rules of a session token:

- header `typ` is `terminal+jwt`, so an iam access token can never open a shell;
- `iss` is terminal-gateway, `aud` is `node:<this node's name>` (a token for another node
  is refused);
- `sub` (the user), `tenant`, `allocation_id`, `jti`, `iat` and `exp` are required and
  `exp - iat` is at most `max_lifetime_s` (300 s);
- `jti` is single use: a replayed token is refused. The ledger is in memory; a token
  issued before this agent process started is refused too, so a restart cannot reopen
  the replay window.

What the session is comes with it: `sid` (the terminal session a reattach joins; the jti
when absent), `mode` (`shell`, `exec` with `cmd` and `pty`, or `forward` with `port`),
`grace_s` (how long a detached PTY waits for a reattach) and `idle_s` (idle timeout).

The session token alone opens nothing: the upgrade request must also carry a relay
assertion (`X-Terminal-Relay`), a second JWT from the same issuer, `typ:
terminal-relay+jwt`, for the same node, naming the session token's jti in `session_jti`
and living at most 60 s. Only terminal-gateway can make one, so a user who holds a
session token (the browser does) cannot reach the shell around the relay, its recording
and its audit, even where the network would let them reach the agent.
"""

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

from platformkit.tokens import AccessTokenVerifier, HttpJwks, InvalidToken, JwksCache

SESSION_TOKEN_TYPE = "terminal+jwt"
RELAY_TOKEN_TYPE = "terminal-relay+jwt"
RELAY_HEADER = "x-terminal-relay"
DEFAULT_ISSUER = "terminal-gateway"
DEFAULT_MAX_LIFETIME_S = 300
RELAY_MAX_LIFETIME_S = 60
MODES = ("shell", "exec", "forward")


def node_audience(node_name: str) -> str:
    return f"node:{node_name}"


@dataclasses.dataclass(frozen=True)
class TerminalGrant:
    """What a verified session token allows: this user into this allocation's shell."""

    user: str
    tenant: str
    allocation_id: str
    token_id: str
    expires_at: float
    session_id: str = ""
    mode: str = "shell"
    command: str | None = None
    pty: bool = True
    port: int | None = None
    grace_s: float | None = None
    idle_s: float | None = None


class ReplayLedger:
    """Token ids seen until they expire (after that the token is refused as expired)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def first_use(self, jti: str, expires_at: float, now: float) -> bool:
        for old in [j for j, exp in self._seen.items() if exp < now]:
            del self._seen[old]
        if jti in self._seen:
            return False
        self._seen[jti] = expires_at
        return True


class SessionTokenVerifier:
    def __init__(
        self,
        verifier: AccessTokenVerifier,
        *,
        max_lifetime_s: float = DEFAULT_MAX_LIFETIME_S,
        not_before: float | None = None,
        clock: Callable[[], float] = time.time,
        relay_verifier: AccessTokenVerifier | None = None,
    ) -> None:
        self.verifier = verifier
        self.relay_verifier = relay_verifier
        self.max_lifetime_s = max_lifetime_s
        self.clock = clock
        # iat is whole seconds: a token minted in the second the agent started still counts.
        self.not_before = math.floor(clock() if not_before is None else not_before)
        self.ledger = ReplayLedger()

    @classmethod
    def from_jwks_url(
        cls, jwks_url: str, *, node_name: str, issuer: str = DEFAULT_ISSUER, **kwargs: Any
    ) -> "SessionTokenVerifier":
        keys = JwksCache(HttpJwks(jwks_url))

        def verifier(token_type: str) -> AccessTokenVerifier:
            return AccessTokenVerifier(
                keys, issuer=issuer, audience=node_audience(node_name), token_types=(token_type,)
            )

        return cls(
            verifier(SESSION_TOKEN_TYPE), relay_verifier=verifier(RELAY_TOKEN_TYPE), **kwargs
        )

    async def verify(self, token: str, relay: str | None = None) -> TerminalGrant:
        """The grant, or InvalidToken naming why (the reason goes back in the close frame).
        `relay` is the relay assertion; required when the verifier has a relay verifier."""
        claims = await self.verifier.claims(token)
        try:
            grant = _grant(claims)
            issued_at = float(claims["iat"])
        except (KeyError, TypeError, ValueError):
            raise InvalidToken("the session token's claims are malformed") from None
        if grant.expires_at - issued_at > self.max_lifetime_s:
            raise InvalidToken("the session token lives too long")
        if issued_at < self.not_before:
            raise InvalidToken("the session token predates this agent")
        if self.relay_verifier is not None:
            await self._verify_relay(relay, grant)
        if not self.ledger.first_use(grant.token_id, grant.expires_at, self.clock()):
            raise InvalidToken("the session token was already used")
        return grant

    async def _verify_relay(self, relay: str | None, grant: TerminalGrant) -> None:
        assert self.relay_verifier is not None
        if not relay:
            raise InvalidToken("sessions are opened through terminal-gateway's relay only")
        claims = await self.relay_verifier.claims(relay)
        try:
            lifetime = float(claims["exp"]) - float(claims["iat"])
            bound = _text(claims, "session_jti")
        except (KeyError, TypeError, ValueError):
            raise InvalidToken("the relay assertion's claims are malformed") from None
        if lifetime > RELAY_MAX_LIFETIME_S:
            raise InvalidToken("the relay assertion lives too long")
        if bound != grant.token_id:
            raise InvalidToken("the relay assertion is for another session token")


def _grant(claims: dict[str, Any]) -> TerminalGrant:
    mode = claims.get("mode", "shell")
    if mode not in MODES:
        raise ValueError("mode")
    port = claims.get("port")
    if mode == "forward" and not (isinstance(port, int) and 1 <= port <= 65535):
        raise ValueError("port")
    command = claims.get("cmd")
    if command is not None and not isinstance(command, str):
        raise ValueError("cmd")
    if mode == "exec" and not command:
        raise ValueError("cmd")
    return TerminalGrant(
        user=_text(claims, "sub"),
        tenant=_text(claims, "tenant"),
        allocation_id=_text(claims, "allocation_id"),
        token_id=_text(claims, "jti"),
        expires_at=float(claims["exp"]),
        session_id=str(claims.get("sid") or claims["jti"]),
        mode=mode,
        command=command,
        pty=bool(claims.get("pty", True)),
        port=port if mode == "forward" else None,
        grace_s=_seconds(claims.get("grace_s")),
        idle_s=_seconds(claims.get("idle_s")),
    )


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError("seconds")
    return float(value)


def _text(claims: dict[str, Any], name: str) -> str:
    value = claims[name]
    if not isinstance(value, str) or not value:
        raise ValueError(name)
    return value
