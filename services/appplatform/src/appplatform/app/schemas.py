"""Request and response bodies of appplatform's routes (msgspec Structs; the use cases in
app/ build them, so they live beside them)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

from gpucloud_manifest import GpuMemoryRange, Port, Probe, Volume

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


# ----------------------------------------------------------------------------- instances

InstanceName = Annotated[str, msgspec.Meta(pattern="^[a-z0-9][a-z0-9-]{0,62}$")]
EnvValues = dict[
    Annotated[str, msgspec.Meta(pattern="^[A-Za-z_][A-Za-z0-9_]{0,127}$")],
    Annotated[str, msgspec.Meta(max_length=4096)],
]


class ResourcesOverride(msgspec.Struct, forbid_unknown_fields=True):
    """Within what the manifest allows: a SKU whose memory is in its range (or its SKU), a
    count up to its count."""

    sku: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    count: Annotated[int, msgspec.Meta(ge=1, le=8)] | None = None


class InstanceCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Launch an app: the newest version promoted to `channel` (stable unless given), or
    one `version`. `env` sets the manifest's variables (those required at launch must be
    given; values are visible in events and to the project: never secrets)."""

    name: InstanceName
    channel: Channel | None = None
    version: Annotated[str, msgspec.Meta(min_length=5, max_length=128)] | None = None
    namespace: Namespace | None = None
    replicas: Annotated[int, msgspec.Meta(ge=1, le=16)] | None = None
    env: EnvValues = {}
    resources: ResourcesOverride | None = None


class InstancePatch(msgspec.Struct, forbid_unknown_fields=True):
    """Change the desired state; each accepted change grows `generation` by one."""

    replicas: Annotated[int, msgspec.Meta(ge=1, le=16)] | None = None
    version: Annotated[str, msgspec.Meta(min_length=5, max_length=128)] | None = None
    env: EnvValues | None = None


class Condition(msgspec.Struct, rename="camel"):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    observed_generation: int
    last_transition_time: dt.datetime


class ReplicaOut(msgspec.Struct):
    replica_id: uuid.UUID
    slot: int
    generation: int
    state: str
    allocation_id: uuid.UUID | None = None
    node_id: uuid.UUID | None = None
    reason: str | None = None


class InstanceSpec(msgspec.Struct):
    app: str
    app_tenant_id: uuid.UUID
    version: str
    manifest_digest: str
    replicas: int
    env: dict[str, str]
    sku: str
    count: int
    channel: str | None = None
    mig_profile: str | None = None
    desired_state: Literal["running", "stopped"] = "running"


class InstanceStatus(msgspec.Struct):
    state: str
    observed_generation: int
    ready_replicas: int
    conditions: list[Condition]
    replicas: list[ReplicaOut]
    reason: str | None = None


class InstanceOut(msgspec.Struct):
    id: uuid.UUID
    tenant_id: uuid.UUID
    project_id: uuid.UUID
    name: str
    generation: int
    spec: InstanceSpec
    status: InstanceStatus
    created_by: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class InstancePage(msgspec.Struct):
    items: list[InstanceOut]
    next_after: uuid.UUID | None = None
