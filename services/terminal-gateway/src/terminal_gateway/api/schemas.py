"""Request and response bodies of terminal-gateway's routes."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import msgspec

State = Literal["minted", "open", "detached", "closed", "expired", "revoked"]


class SessionCreate(msgspec.Struct, forbid_unknown_fields=True):
    allocation_id: uuid.UUID


class SessionOut(msgspec.Struct, omit_defaults=True):
    id: uuid.UUID
    tenant_id: uuid.UUID
    project_id: uuid.UUID
    allocation_id: uuid.UUID
    node_id: uuid.UUID
    user_id: uuid.UUID
    via: Literal["browser", "ssh"]
    kind: Literal["shell", "exec", "forward"]
    state: State
    attachments: int
    minted_at: dt.datetime
    reason: str | None = None
    client_address: str | None = None
    opened_at: dt.datetime | None = None
    detached_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    recording_bytes: int | None = None
    recording_digest: str | None = None


class SessionToken(msgspec.Struct):
    """A session and its single-use connect token."""

    session: SessionOut
    token: Annotated[
        str,
        msgspec.Meta(
            description="Single use, at most 60 s: `Authorization: Bearer <token>` on the"
            " WebSocket upgrade, or the subprotocol `bearer.<token>` from a browser"
        ),
    ]
    connect_url: Annotated[
        str, msgspec.Meta(description="The WebSocket to open (through the gateway)")
    ]
    expires_at: dt.datetime


class Policy(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    require_mfa: Annotated[
        bool,
        msgspec.Meta(
            description="Opening or reattaching needs a second factor used within 10 minutes"
        ),
    ] = False
    idle_timeout_s: (
        Annotated[int, msgspec.Meta(ge=60, le=86400, description="Close sessions idle this long")]
        | None
    ) = None


def session_out(row: Any) -> SessionOut:
    final = row["state"] in ("closed", "expired", "revoked")
    return SessionOut(
        id=row["id"], tenant_id=row["tenant_id"], project_id=row["project_id"],
        allocation_id=row["allocation_id"], node_id=row["node_id"], user_id=row["user_id"],
        via=row["via"], kind=row["kind"], state=row["state"],
        attachments=row.get("attachments") or 0, minted_at=row["minted_at"],
        reason=row.get("reason"), client_address=row.get("client_address"),
        opened_at=row.get("opened_at"), detached_at=row.get("detached_at"),
        ended_at=row.get("ended_at"),
        recording_bytes=row.get("recording_bytes") if final else None,
        recording_digest=row.get("recording_digest"),
    )  # fmt: skip


class SshEndpoint(msgspec.Struct):
    """Where `ssh <allocation id>@<host> -p <port>` reaches terminal-gateway, and the host
    key it presents (pin it instead of trusting it on first use)."""

    host: str
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    host_keys: Annotated[
        list[str], msgspec.Meta(description="OpenSSH public keys: `ssh-ed25519 AAAA...`")
    ]
    known_hosts: Annotated[
        list[str], msgspec.Meta(description="The same keys as lines of a known_hosts file")
    ]
    user: Annotated[str, msgspec.Meta(description="The login name to use: the allocation's id")] = (
        "<allocation id>"
    )
