"""The launch gate (docs/gpuaas.md): a launch that names a bundle passes only if registry's
release of it is signed by keys the tenant trusts now, untampered, promoted to the channel
the project requires and not yanked (`gpucloud_trust.gate.check_launch`, the rule the node
agent applies again after pulling).

gpuaas decides from its own projection, never by calling registry: one inbox consumer of
`registry.release.v1` (per version the event with the highest sequence; every promotion's
signer threshold) and `registry.key.v1` (per tenant each key's furthest status and latest
trust expiry; the `signers` of release events feed it too). After every change the live
allocations running the releases it touches are assessed again: one whose release no longer
passes (yanked, a revoked or expired key) is reported on the allocation (`bundle.withdrawn`)
and in the log; it keeps running (an operator or the tenant releases it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from gpuaas.app.errors import LaunchRefusedProblem
from gpuaas.domain.allocations import LaunchedBundle
from gpuaas.store.repository import LaunchGateRepository
from gpucloud_contracts.events.registry import KeyChanged, ReleaseChanged
from gpucloud_trust.dsse import Envelope, InvalidEnvelope
from gpucloud_trust.gate import CHANNELS, LaunchRefused, Release, TrustedKey, check_launch
from gpucloud_trust.keys import InvalidKey, PublicKey
from platformkit.consumers import Handler
from platformkit.db import Database, UnitOfWork
from platformkit.envelope import CloudEvent
from platformkit.errors import NotFound

log = logging.getLogger(__name__)

RELEASE_TOPIC = "registry.release.v1"
KEY_TOPIC = "registry.key.v1"
PLATFORM = uuid.UUID(int=0)  # registry's platform-public namespace
DEFAULT_CHANNEL = "stable"


@dataclasses.dataclass(frozen=True)
class BundleRequest:
    """What a launch names: an app of the project (or of the platform-public namespace), its
    version, and the bundle digest the caller expects to run."""

    app: str
    version: str
    digest: str
    platform: bool = False


@dataclasses.dataclass(frozen=True)
class LaunchPolicy:
    required_channel: str = DEFAULT_CHANNEL
    require_bundle: bool = False
    configured: bool = False


# ----------------------------------------------------------------------------- projection


def registry_handler() -> Handler:
    async def apply_registry_event(event: CloudEvent, uow: UnitOfWork) -> None:
        repo = LaunchGateRepository(uow)
        if event.type.startswith("registry.key."):
            key = msgspec.json.decode(event.data, type=KeyChanged)
            await _apply_key(repo, key.tenant_id, key.key_id, key.public_key, key.status,
                             key.expires_at, key.occurred_at)  # fmt: skip
            await reassess(uow, key.tenant_id)
            return
        release = msgspec.json.decode(event.data, type=ReleaseChanged)
        for signer in release.signers:
            await _apply_key(repo, release.tenant_id, signer.key_id, signer.public_key,
                             signer.status, signer.expires_at, release.occurred_at)  # fmt: skip
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
        await reassess(uow, release.tenant_id, release.app, release.version)

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


def _release(row: Any) -> Release | None:
    if row is None:
        return None
    envelopes: list[Envelope] = []
    for text in row["envelopes"]:
        try:
            envelopes.append(Envelope.from_json(text))
        except InvalidEnvelope:
            continue  # counts for nothing, like a signature that does not verify
    return Release(
        tenant=str(row["tenant_id"]),
        app=row["app"],
        version=row["version"],
        manifest_digest=row["manifest_digest"],
        envelopes=tuple(envelopes),
        channels=frozenset(row["channels"]),
        yanked=row["yanked"],
        thresholds=row["thresholds"] or {},
    )


def _keys(rows: Sequence[Any]) -> list[TrustedKey]:
    return [
        TrustedKey(PublicKey.from_raw(bytes(r["public_key"])), r["status"], r["expires_at"])
        for r in rows
    ]


async def check(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    project_id: uuid.UUID,
    request: BundleRequest,
    channel: str,
    now: dt.datetime,
) -> LaunchedBundle:
    """The bundle to record on the allocation, or LaunchRefusedProblem (422) naming why. A
    tenant's app is launchable only from its own project; a platform-public one from any."""
    namespace = PLATFORM if request.platform else tenant_id
    repo = LaunchGateRepository(uow)
    row = await repo.release(namespace, request.app, request.version)
    if row is not None and not request.platform and row["project_id"] != project_id:
        row = None  # another project's app reads as unknown, like any other resource
    keys = await repo.keys(namespace) if row is not None else []
    try:
        check_launch(_release(row), request.digest, channel, _keys(keys), now)
    except LaunchRefused as refused:
        raise LaunchRefusedProblem(refused.reason, refused.detail) from None
    return LaunchedBundle(namespace, request.app, request.version, request.digest, channel)


async def reassess(
    uow: UnitOfWork, namespace: uuid.UUID, app: str | None = None, version: str | None = None
) -> None:
    """Assess the live allocations running releases of the namespace (of app@version) again
    and record on each why its release no longer passes (None once it passes again)."""
    repo = LaunchGateRepository(uow)
    live = await repo.live_with_bundle(namespace, app, version)
    if not live:
        return
    keys = _keys(await repo.keys(namespace))
    now = dt.datetime.now(dt.UTC)
    for a in live:
        release = _release(await repo.release(namespace, a["bundle_app"], a["bundle_version"]))
        try:
            check_launch(release, a["bundle_digest"], a["bundle_channel"], keys, now)
            reason = None
        except LaunchRefused as refused:
            reason = refused.reason
        if reason != a["bundle_withdrawn"]:
            await repo.set_withdrawn(a["id"], reason)
            if reason is not None:
                log.warning(
                    "a running allocation's release no longer passes the launch gate",
                    extra={"fields": {"allocation_id": str(a["id"]), "reason": reason,
                                      "app": a["bundle_app"], "version": a["bundle_version"]}},
                )  # fmt: skip


# ----------------------------------------------------------------------------- policies


async def launch_policy(
    uow: UnitOfWork, tenant_id: uuid.UUID, project_id: uuid.UUID
) -> LaunchPolicy:
    row = await LaunchGateRepository(uow).policy(project_id)
    if row is None or row["tenant_id"] != tenant_id:
        return LaunchPolicy()
    return LaunchPolicy(row["required_channel"], row["require_bundle"], configured=True)


async def set_launch_policy(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    project_id: uuid.UUID,
    policy: LaunchPolicy,
    actor: str,
) -> LaunchPolicy | None:
    """None when the project's policy belongs to another tenant (nothing is changed)."""
    if policy.required_channel not in CHANNELS:
        raise ValueError(f"unknown channel {policy.required_channel!r}")
    row = await LaunchGateRepository(uow).set_policy(
        {
            "project_id": project_id,
            "tenant_id": tenant_id,
            "required_channel": policy.required_channel,
            "require_bundle": policy.require_bundle,
            "updated_by": actor,
            "updated_at": dt.datetime.now(dt.UTC),
        }
    )
    if row is None:
        return None
    return LaunchPolicy(row["required_channel"], row["require_bundle"], configured=True)


async def get_launch_policy(
    db: Database, tenant_id: uuid.UUID, project_id: uuid.UUID
) -> LaunchPolicy:
    async with db.unit_of_work() as uow:
        return await launch_policy(uow, tenant_id, project_id)


async def put_launch_policy(
    db: Database, tenant_id: uuid.UUID, project_id: uuid.UUID, policy: LaunchPolicy, actor: str
) -> LaunchPolicy:
    async with db.unit_of_work() as uow:
        stored = await set_launch_policy(uow, tenant_id, project_id, policy, actor)
        if stored is None:  # the project's policy is another tenant's
            raise NotFound(f"project {project_id} not found")
        await uow.commit()
    return stored
