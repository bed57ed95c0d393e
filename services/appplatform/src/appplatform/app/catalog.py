"""The app catalog a caller sees: its tenant's apps and the platform-public ones, each with
its promoted, unyanked versions per channel (newest first) and the manifest's summary."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import Any

import msgspec

from appplatform.app.schemas import (
    CatalogApp,
    CatalogChannel,
    CatalogVersion,
    EnvRequirement,
    ManifestSummary,
    ResourcesOut,
)
from appplatform.domain.catalog import CHANNELS, PLATFORM, visible_namespaces
from appplatform.store import repository as repo
from gpucloud_manifest import Manifest
from platformkit.db import Database

MAX_ROWS = 2000


def manifest_of(row: Any) -> Manifest:
    raw = row["manifest"]
    return (
        msgspec.convert(raw, Manifest)
        if isinstance(raw, dict)
        else msgspec.json.decode(raw, type=Manifest)
    )


def summary(manifest: Manifest) -> ManifestSummary:
    r = manifest.resources
    return ManifestSummary(
        ports=list(manifest.ports),
        resources=ResourcesOut(
            count=r.count, sku=r.sku, gpu_memory_gb=r.gpu_memory_gb, mig_profile=r.mig_profile
        ),
        env_required_at_launch=[
            EnvRequirement(name, manifest.env[name].description) for name in manifest.required_env()
        ],
        replicas=manifest.replicas,
        probe=manifest.probe,
        idle_stop_after_s=manifest.idle_stop_after_s,
        volumes=list(manifest.volumes),
    )


async def list_catalog(
    db: Database,
    tenant_id: uuid.UUID | None,
    q: str | None,
    channel: str | None,
    namespace: str | None,
) -> list[CatalogApp]:
    namespaces = visible_namespaces(tenant_id)
    if namespace == "platform":
        namespaces = [PLATFORM]
    elif namespace == "tenant":
        namespaces = [n for n in namespaces if n != PLATFORM]
    if not namespaces:
        return []
    async with db.unit_of_work() as uow:
        rows = await repo.catalog_rows(uow, namespaces, q, channel, MAX_ROWS)
    apps: OrderedDict[tuple[uuid.UUID, str], dict[str, list[CatalogVersion]]] = OrderedDict()
    descriptions: dict[tuple[uuid.UUID, str], str | None] = {}
    for row in rows:
        key = (row["tenant_id"], row["app"])
        per_channel = apps.setdefault(key, {})
        descriptions.setdefault(key, row["description"])
        version = CatalogVersion(
            version=row["version"],
            version_id=row["version_id"],
            manifest_digest=row["manifest_digest"],
            published_at=row["published_at"],
            manifest=summary(manifest_of(row)),
        )
        for name in row["channels"]:
            if channel is None or name == channel:
                per_channel.setdefault(name, []).append(version)
    return [
        CatalogApp(
            namespace="platform" if ns == PLATFORM else "tenant",
            tenant_id=ns,
            app=app,
            description=descriptions[(ns, app)],
            channels=[
                CatalogChannel(channel=c, versions=per_channel[c])  # type: ignore[arg-type]
                for c in CHANNELS
                if c in per_channel
            ],
        )
        for (ns, app), per_channel in apps.items()
    ]
