"""The release document: a version with everything a launch gate needs to decide offline.
The same document is every registry.release.v1 event's payload and the answer of the
version read, built in one place from the catalog."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from typing import Any

from gpucloud_contracts.events.registry import (
    Blob,
    Bundle,
    PolicyResult,
    ReleaseChanged,
    SignedStatement,
    Signer,
)
from platformkit.db import UnitOfWork
from registry.domain.apps import is_platform
from registry.domain.channels import ReleaseState
from registry.store import repository as repo

VERSION_PUBLISHED = "registry.version.published"
STATEMENT_ATTACHED = "registry.statement.attached"
RELEASE_PROMOTED = "registry.release.promoted"
RELEASE_YANKED = "registry.release.yanked"


def _blob(row: Any) -> Blob:
    return Blob(digest=row["digest"], size=row["size"], media_type=row["media_type"])


def statement_out(row: Any) -> SignedStatement:
    return SignedStatement(
        statement_id=row["id"],
        kind=row["kind"],
        predicate_type=row["predicate_type"],
        evidence_kind=row["evidence_kind"],
        envelope=bytes(row["envelope"]).decode(),
        signer_key_ids=list(row["signer_key_ids"]),
    )


def signer_out(row: Any) -> Signer:
    return Signer(
        key_id=row["key_id"],
        public_key=base64.b64encode(bytes(row["public_key"])).decode(),
        status=row["status"],
        revoked_at=row["revoked_at"],
        expires_at=row["expires_at"],
    )


def state_of(promotions: list[Any]) -> ReleaseState:
    return ReleaseState.of(
        [p["channel"] for p in promotions if p["action"] == "promote"],
        any(p["action"] == "yank" for p in promotions),
    )


async def release_document(
    uow: UnitOfWork,
    app: Any,
    version: Any,
    *,
    channel: str | None = None,
    policy: PolicyResult | None = None,
    actor: str | None = None,
) -> ReleaseChanged:
    bundle_row = await repo.bundle(uow, app["id"], version["manifest_digest"])
    blobs = await repo.bundle_blobs(uow, app["id"], version["manifest_digest"])
    statement_rows = await repo.statements(uow, version["id"])
    promotion_rows = await repo.promotions(uow, version["id"])
    signed_by = {k for s in statement_rows for k in s["signer_key_ids"]}
    keys = [k for k in await repo.keys(uow, app["tenant_id"]) if k["key_id"] in signed_by]
    state = state_of(promotion_rows)
    yank = next((p for p in promotion_rows if p["action"] == "yank"), None)
    latest = promotion_rows[-1] if promotion_rows else None
    return ReleaseChanged(
        tenant_id=app["tenant_id"],
        project_id=None if is_platform(app["tenant_id"]) else app["project_id"],
        app_id=app["id"],
        app=app["name"],
        version_id=version["id"],
        version=version["version"],
        bundle=Bundle(
            manifest_digest=bundle_row["manifest_digest"],
            media_type=bundle_row["media_type"],
            artifact_type=bundle_row["artifact_type"],
            size=len(bytes(bundle_row["manifest"])),
            config=_blob(blobs[0]),
            layers=[_blob(b) for b in blobs[1:]],
            app_manifest=_json_object(bundle_row["app_manifest"]),
        ),
        statements=[statement_out(s) for s in statement_rows],
        signers=[signer_out(k) for k in keys],
        channels=[c.value for c in state.live_channels],
        channel=channel,
        policy=policy if policy is not None else _last_policy(promotion_rows),
        yanked=state.yanked,
        yank_reason=yank["reason"] if yank else None,
        actor=actor or (latest["actor"] if latest else version["published_by"]),
        # Both logs are append-only, so the sequence only grows.
        sequence=1 + len(statement_rows) + len(promotion_rows),
        occurred_at=(latest["occurred_at"] if latest else version["published_at"])
        if actor is None
        else dt.datetime.now(dt.UTC),
    )


def _json_object(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return value if isinstance(value, dict) else json.loads(value)


def _last_policy(promotions: list[Any]) -> PolicyResult | None:
    for row in reversed(promotions):
        if row["policy"] is not None:
            data = row["policy"] if isinstance(row["policy"], dict) else json.loads(row["policy"])
            return PolicyResult(**data)
    return None


async def release_for(uow: UnitOfWork, version_id: uuid.UUID) -> tuple[Any, Any]:
    """(app, version) rows of a version id."""
    version = await uow.fetch_one("SELECT * FROM versions WHERE id = :v", {"v": version_id})
    app = await uow.fetch_one("SELECT * FROM apps WHERE id = :a", {"a": version["app_id"]})
    return app, version
