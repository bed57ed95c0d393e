"""The claims of the tokens terminal-gateway signs (EdDSA; the node agent verifies them
against terminal-gateway's JWKS, services/gpuaas-node-agent/src/node_agent/session_tokens.py):

- the **session token** (`typ: terminal+jwt`, at most 60 s, single use): this user into this
  allocation on this node (`aud: node:<name>`), for session `sid`, with what to run and the
  session's timers. The browser gets it as its connect token; the relay hands it on.
- the **relay assertion** (`typ: terminal-relay+jwt`, at most 60 s): terminal-gateway vouches
  that it relays the session token `session_jti`. A client holding a session token cannot
  make one, so it cannot open a shell at the agent around the relay.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

SESSION_TOKEN_TYPE = "terminal+jwt"
RELAY_TOKEN_TYPE = "terminal-relay+jwt"
MAX_TTL_S = 60


def node_audience(node_name: str) -> str:
    return f"node:{node_name}"


@dataclasses.dataclass(frozen=True)
class SessionGrant:
    session_id: uuid.UUID
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    allocation_id: uuid.UUID
    node_name: str
    kind: str = "shell"  # shell | exec | forward
    command: str | None = None
    pty: bool = True
    port: int | None = None
    grace_s: int = 300
    idle_s: int | None = None


def session_claims(
    grant: SessionGrant, *, issuer: str, jti: uuid.UUID, now: int, ttl_s: int
) -> dict[str, Any]:
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise ValueError("a session token lives at most 60 s")
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": node_audience(grant.node_name),
        "sub": str(grant.user_id),
        "tenant": str(grant.tenant_id),
        "allocation_id": str(grant.allocation_id),
        "sid": str(grant.session_id),
        "jti": str(jti),
        "iat": now,
        "exp": now + ttl_s,
        "mode": grant.kind,
        "grace_s": grant.grace_s,
    }
    if grant.kind == "exec":
        claims["cmd"] = grant.command
        claims["pty"] = grant.pty
    if grant.kind == "forward":
        claims["port"] = grant.port
    if grant.idle_s:
        claims["idle_s"] = grant.idle_s
    return claims


def relay_claims(
    *, issuer: str, node_name: str, session_jti: str, jti: uuid.UUID, now: int, ttl_s: int = 30
) -> dict[str, Any]:
    return {
        "iss": issuer,
        "aud": node_audience(node_name),
        "sub": "terminal-gateway",
        "session_jti": session_jti,
        "jti": str(jti),
        "iat": now,
        "exp": now + min(ttl_s, MAX_TTL_S),
    }
