"""The launch gate (docs/gpuaas.md, "Launch gate"): gpuaas's projection of registry's
releases and the tenants' publisher keys, each project's required channel, and the check a
launch naming a bundle passes before anything is recorded.

gpuaas decides from its own tables, never by calling registry. One inbox consumer
(subscription `launch-gate`) of `registry.release.v1` (per version the event with the
highest sequence; every promotion's signer threshold) and `registry.key.v1` (per tenant each
key's furthest status and latest trust expiry; the `signers` of release events feed it too).
The decision is `domain.launch_gate.decide` (pure). An accepted allocation carries the
bundle; the node's desired state carries it with the envelopes and keys, so the agent
verifies again before running it.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from gpuaas.app.errors import LaunchRefusedProblem
from gpuaas.domain.allocations import Allocation, LaunchedBundle
from gpuaas.domain.launch_gate import (
    DEFAULT_CHANNEL,
    PLATFORM,
    Allowed,
    BundleRequest,
    DecisionMemo,
    KeyFacts,
    ReleaseFacts,
    namespace_of,
)
from gpuaas.store.repository import LaunchGateRepository
from gpucloud_contracts.events.registry import KeyChanged, ReleaseChanged
from gpucloud_contracts.node_sync import BundleKey, DesiredBundle
from gpucloud_trust.keys import InvalidKey, PublicKey
from platformkit.consumers import Handler
from platformkit.db import Database, UnitOfWork
from platformkit.envelope import CloudEvent

log = logging.getLogger(__name__)
# Decisions already made, answered again without the signature checks (domain.DecisionMemo:
# keyed by every fact decided from, valid until the next key expiry).
MEMO = DecisionMemo()


# ----------------------------------------------------------------------------- projection


def registry_handler() -> Handler:
    async def apply_registry_event(event: CloudEvent, uow: UnitOfWork) -> None:
        repo = LaunchGateRepository(uow)
        if event.type.startswith("registry.key."):
            key = msgspec.json.decode(event.data, type=KeyChanged)
            await _apply_key(
                repo, key.tenant_id, key.key_id, key.public_key, key.status,
                key.expires_at, key.occurred_at,
            )  # fmt: skip
            return
        if not event.type.startswith(("registry.release.", "registry.version.",
                                       "registry.statement.")):  # fmt: skip
            return
        release = msgspec.json.decode(event.data, type=ReleaseChanged)
        for signer in release.signers:
            await _apply_key(
                repo, release.tenant_id, signer.key_id, signer.public_key, signer.status,
                signer.expires_at, release.occurred_at,
            )  # fmt: skip
        thresholds = {release.policy.channel: release.policy.threshold} if release.policy else {}
        await repo.apply_release(
            {
                "version_id": release.version_id,
                "tenant_id": release.tenant_id,
                "project_id": release.project_id,
                "app": release.app,
                "version": release.version,
                "manifest_digest": release.bundle.manifest_digest,
                "channels": list(release.channels),
                "yanked": release.yanked,
                "envelopes": [s.envelope for s in release.statements if s.kind == "release"],
                "thresholds": thresholds,
                "sequence": release.sequence,
                "occurred_at": release.occurred_at,
            }
        )

    return apply_registry_event


async def _apply_key(
    repo: LaunchGateRepository,
    tenant_id: uuid.UUID,
    key_id: str,
    public_key: str,
    status: str,
    expires_at: dt.datetime | None,
    as_of: dt.datetime,
) -> None:
    try:
        public = PublicKey.from_base64(public_key)
    except InvalidKey:
        log.warning("publisher key not projected: not an Ed25519 key", extra={"fields": {
            "tenant_id": str(tenant_id), "key_id": key_id}})  # fmt: skip
        return
    if public.keyid != key_id:  # the id is derived from the key; anything else is a forgery
        log.warning("publisher key not projected: its id does not match the key",
                    extra={"fields": {"tenant_id": str(tenant_id), "key_id": key_id}})  # fmt: skip
        return
    await repo.apply_key(
        {
            "tenant_id": tenant_id,
            "key_id": key_id,
            "public_key": public.raw,
            "status": status,
            "expires_at": expires_at,
            "as_of": as_of,
        }
    )


# ----------------------------------------------------------------------------- the check


def release_facts(row: Any) -> ReleaseFacts | None:
    if row is None:
        return None
    return ReleaseFacts(
        tenant_id=row["tenant_id"],
        project_id=row["project_id"],
        app=row["app"],
        version=row["version"],
        manifest_digest=row["manifest_digest"],
        envelopes=tuple(row["envelopes"]),
        channels=frozenset(row["channels"]),
        yanked=row["yanked"],
        thresholds=row["thresholds"] or {},
    )


def key_facts(rows: Sequence[Any]) -> list[KeyFacts]:
    return [KeyFacts(bytes(r["public_key"]), r["status"], r["expires_at"]) for r in rows]


async def check(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    project_id: uuid.UUID,
    request: BundleRequest,
    now: dt.datetime,
) -> LaunchedBundle:
    """The bundle to record on the allocation, or LaunchRefusedProblem (422) naming why."""
    namespace = namespace_of(tenant_id, request)
    channel, row, keys = await LaunchGateRepository(uow).gate_facts(
        tenant_id, project_id, namespace, request.app, request.version
    )
    channel = channel or DEFAULT_CHANNEL
    outcome = MEMO.decide(
        tenant_id, project_id, request, channel, release_facts(row), key_facts(keys), now
    )
    if not isinstance(outcome, Allowed):
        raise LaunchRefusedProblem(outcome.reason, outcome.detail)
    return LaunchedBundle(namespace, request.app, request.version, request.digest, channel)


async def standing(
    uow: UnitOfWork, allocations: Sequence[Allocation], now: dt.datetime
) -> dict[uuid.UUID, str]:
    """For allocations that run a bundle: the reason the gate would refuse a launch of the
    same release in the same project and channel now (yanked, revoked, expired,
    below-threshold, untrusted, ...), keyed by allocation id; absent when it would still pass.
    Registry can yank a release or revoke a signer key after the launch: what runs keeps
    running (the tenant decides), and the reads report it. One decision per distinct release."""
    repo = LaunchGateRepository(uow)
    keys_of: dict[uuid.UUID, list[KeyFacts]] = {}
    decided: dict[tuple[Any, ...], str | None] = {}
    out: dict[uuid.UUID, str] = {}
    for a in allocations:
        b = a.bundle
        if b is None:
            continue
        platform = b.tenant_id == PLATFORM
        key = (b.tenant_id, a.project_id, b.app, b.version, b.digest, b.channel)
        if key not in decided:
            row = await repo.release(b.tenant_id, b.app, b.version)
            if b.tenant_id not in keys_of:
                keys_of[b.tenant_id] = key_facts(await repo.keys(b.tenant_id))
            outcome = MEMO.decide(
                a.tenant_id,
                a.project_id,
                BundleRequest(b.app, b.version, b.digest, platform),
                b.channel,
                release_facts(row),
                keys_of[b.tenant_id],
                now,
            )
            decided[key] = None if isinstance(outcome, Allowed) else outcome.reason
        reason = decided[key]
        if reason is not None:
            out[a.id] = reason
    return out


async def desired_bundles(
    db: Database, allocations: Sequence[Allocation]
) -> dict[uuid.UUID, DesiredBundle]:
    """For the node's desired state: each bundled allocation's release facts and keys as
    the projection holds them now, so the agent can verify them again itself."""
    bundled = [a for a in allocations if a.bundle is not None]
    if not bundled:
        return {}
    out: dict[uuid.UUID, DesiredBundle] = {}
    async with db.unit_of_work() as uow:
        repo = LaunchGateRepository(uow)
        keys_of: dict[uuid.UUID, list[BundleKey]] = {}
        for a in bundled:
            b = a.bundle
            assert b is not None
            row = await repo.release(b.tenant_id, b.app, b.version)
            if b.tenant_id not in keys_of:
                keys_of[b.tenant_id] = [
                    BundleKey(
                        public_key=PublicKey.from_raw(bytes(k["public_key"])).to_base64(),
                        status=k["status"],
                        expires_at=k["expires_at"],
                    )
                    for k in await repo.keys(b.tenant_id)
                ]
            out[a.id] = DesiredBundle(
                tenant_id=b.tenant_id,
                app=b.app,
                version=b.version,
                digest=b.digest,
                channel=b.channel,
                envelopes=list(row["envelopes"]) if row is not None else [],
                keys=keys_of[b.tenant_id],
                thresholds=dict(row["thresholds"] or {}) if row is not None else {},
            )
    return out


# ----------------------------------------------------------------------------- policy


async def get_required_channel(
    db: Database, tenant_id: uuid.UUID, project_id: uuid.UUID
) -> tuple[str, bool]:
    """The project's required channel, and whether it was set (False: the default)."""
    async with db.unit_of_work() as uow:
        channel = await LaunchGateRepository(uow).required_channel(tenant_id, project_id)
    return (channel, True) if channel else (DEFAULT_CHANNEL, False)


async def set_required_channel(
    db: Database, tenant_id: uuid.UUID, project_id: uuid.UUID, channel: str, actor: str
) -> None:
    async with db.unit_of_work() as uow:
        await LaunchGateRepository(uow).set_required_channel(
            tenant_id, project_id, channel, actor, dt.datetime.now(dt.UTC)
        )
        await uow.commit()
