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
"""

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

from platformkit.tokens import AccessTokenVerifier, HttpJwks, InvalidToken, JwksCache

SESSION_TOKEN_TYPE = "terminal+jwt"
DEFAULT_ISSUER = "terminal-gateway"
DEFAULT_MAX_LIFETIME_S = 300


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
    ) -> None:
        self.verifier = verifier
        self.max_lifetime_s = max_lifetime_s
        self.clock = clock
        # iat is whole seconds: a token minted in the second the agent started still counts.
        self.not_before = math.floor(clock() if not_before is None else not_before)
        self.ledger = ReplayLedger()

    @classmethod
    def from_jwks_url(
        cls, jwks_url: str, *, node_name: str, issuer: str = DEFAULT_ISSUER, **kwargs: Any
    ) -> "SessionTokenVerifier":
        verifier = AccessTokenVerifier(
            JwksCache(HttpJwks(jwks_url)),
            issuer=issuer,
            audience=node_audience(node_name),
            token_types=(SESSION_TOKEN_TYPE,),
        )
        return cls(verifier, **kwargs)

    async def verify(self, token: str) -> TerminalGrant:
        """The grant, or InvalidToken naming why (the reason goes back in the close frame)."""
        claims = await self.verifier.claims(token)
        try:
            grant = TerminalGrant(
                user=_text(claims, "sub"),
                tenant=_text(claims, "tenant"),
                allocation_id=_text(claims, "allocation_id"),
                token_id=_text(claims, "jti"),
                expires_at=float(claims["exp"]),
            )
            issued_at = float(claims["iat"])
        except (KeyError, TypeError, ValueError):
            raise InvalidToken("the session token's claims are malformed") from None
        if grant.expires_at - issued_at > self.max_lifetime_s:
            raise InvalidToken("the session token lives too long")
        if issued_at < self.not_before:
            raise InvalidToken("the session token predates this agent")
        if not self.ledger.first_use(grant.token_id, grant.expires_at, self.clock()):
            raise InvalidToken("the session token was already used")
        return grant


def _text(claims: dict[str, Any], name: str) -> str:
    value = claims[name]
    if not isinstance(value, str) or not value:
        raise ValueError(name)
    return value
