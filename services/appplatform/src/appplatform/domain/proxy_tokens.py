"""The app-proxy token appplatform mints for a node agent (EdDSA, header `typ:
app-proxy+jwt`; the agent verifies it against appplatform's JWKS,
GPUCLOUD_APPS_JWKS_URL): appplatform vouches that the caller may reach this allocation's
declared port (`scope: port`) or its logs (`scope: logs`, port 0), on this node
(`aud: node:<name>`), for at most 60 s. One token per proxied request."""

from __future__ import annotations

import uuid
from typing import Any

TOKEN_TYPE = "app-proxy+jwt"
ISSUER = "appplatform"
MAX_TTL_S = 60
DEFAULT_TTL_S = 30


def node_audience(node_name: str) -> str:
    return f"node:{node_name}"


def proxy_claims(
    *,
    node_name: str,
    allocation_id: uuid.UUID,
    port: int,
    scope: str,
    subject: str,
    jti: uuid.UUID,
    now: int,
    ttl_s: int = DEFAULT_TTL_S,
) -> dict[str, Any]:
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise ValueError("an app-proxy token lives at most 60 s")
    if scope not in ("port", "logs"):
        raise ValueError("scope is port or logs")
    return {
        "iss": ISSUER,
        "aud": node_audience(node_name),
        "sub": subject,
        "allocation_id": str(allocation_id),
        "port": port if scope == "port" else 0,
        "scope": scope,
        "jti": str(jti),
        "iat": now,
        "exp": now + ttl_s,
    }
