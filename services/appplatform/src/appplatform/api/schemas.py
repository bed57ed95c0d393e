"""Request and response bodies of appplatform's routes (msgspec Structs)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

from gpucloud_contracts.app_manifest import GpuMemoryRange, Port, Probe, Volume

Channel = Literal["dev", "staging", "stable"]
Namespace = Literal["tenant", "platform"]


class EnvRequirement(msgspec.Struct):
    name: str
    description: str | None = None


class ResourcesOut(msgspec.Struct):
    count: int
    sku: str | None = None
    gpu_memory_gb: GpuMemoryRange | None = None
    mig_profile: str | None = None


class ManifestSummary(msgspec.Struct):
    """What a launcher needs to know of a release's manifest."""

    ports: list[Port]
    resources: ResourcesOut
    env_required_at_launch: list[EnvRequirement]
    replicas: int
    probe: Probe | None = None
    idle_stop_after_s: int | None = None
    # Declared volumes; their storage is local to the node a replica runs on.
    volumes: list[Volume] = []


class CatalogVersion(msgspec.Struct):
    version: str
    version_id: uuid.UUID
    manifest_digest: str
    published_at: dt.datetime
    manifest: ManifestSummary


class CatalogChannel(msgspec.Struct):
    channel: Channel
    # Newest first: the first is what a launch naming this channel runs.
    versions: list[CatalogVersion]


class CatalogApp(msgspec.Struct):
    namespace: Namespace
    tenant_id: uuid.UUID
    app: str
    channels: list[CatalogChannel]
    description: str | None = None


class CatalogPage(msgspec.Struct):
    items: list[CatalogApp]


Query = Annotated[str, msgspec.Meta(max_length=200)]
