"""Request and response bodies of gpuaas's HTTP API (msgspec Structs)."""

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

Digest = Annotated[str, msgspec.Meta(pattern="^sha256:[0-9a-f]{64}$")]
AppName = Annotated[str, msgspec.Meta(pattern="^[a-z0-9][a-z0-9-]{0,62}$")]
Version = Annotated[str, msgspec.Meta(min_length=5, max_length=128)]
Channel = Literal["dev", "staging", "stable"]


class BundleIn(msgspec.Struct, forbid_unknown_fields=True):
    """A registry release to run: an app of this project (namespace `tenant`) or of the
    platform-public catalog (`platform`), its version, and the bundle digest expected."""

    app: AppName
    version: Version
    digest: Digest
    namespace: Literal["tenant", "platform"] = "tenant"


class AllocationCreate(msgspec.Struct, forbid_unknown_fields=True):
    sku: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    count: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    mig_profile: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] | None = None
    # Release the allocation (reason idle_stop) after this long without workload activity.
    idle_stop_after_s: (
        Annotated[
            int,
            msgspec.Meta(
                ge=60, le=2_592_000, description="Idle stop after this many seconds (60+)"
            ),
        ]
        | None
    ) = None
    # Run this signed, promoted bundle (the launch gate checks it first).
    bundle: BundleIn | None = None


class InstanceOut(msgspec.Struct):
    gpu_index: int
    device_uuid: str
    start: int
    memory_slices: int
    compute_slices: int
    profile_id: int | None = None


class BundleOut(msgspec.Struct):
    tenant_id: uuid.UUID  # the app's namespace (00000000-...: platform-public)
    app: str
    version: str
    digest: str
    channel: str  # the channel the project required when the launch passed the gate
    # Why the release no longer passes the gate (yanked, revoked, expired, ...), while the
    # allocation lives; null while it still passes.
    withdrawn: str | None = None


class AllocationOut(msgspec.Struct):
    id: uuid.UUID
    tenant_id: uuid.UUID
    project_id: uuid.UUID
    sku: str
    mig_profile: str | None
    count: int
    state: str
    price_key: str
    created_at: dt.datetime
    updated_at: dt.datetime
    instances: list[InstanceOut]
    node_id: uuid.UUID | None = None
    reason: str | None = None
    running_since: dt.datetime | None = None
    idle_stop_after_s: int | None = None
    last_active_at: dt.datetime | None = None
    bundle: BundleOut | None = None


class AllocationPage(msgspec.Struct):
    items: list[AllocationOut]
    next_after: uuid.UUID | None = None


class ProfileAvailability(msgspec.Struct):
    name: str
    profile_id: int
    compute_slices: int
    memory_slices: int
    max_per_gpu: int
    valid_starts: list[int]
    price_key: str
    available: int


class SkuOut(msgspec.Struct):
    key: str
    name: str
    memory_gb: int
    mig_capable: bool
    price_key: str
    gpus_total: int
    gpus_free: int
    profiles: list[ProfileAvailability]


class QuotaIn(msgspec.Struct, forbid_unknown_fields=True):
    max_compute_slices: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]


class QuotaOut(msgspec.Struct):
    tenant_id: uuid.UUID
    project_id: uuid.UUID
    max_compute_slices: int
    in_use: int


class GpuIn(msgspec.Struct, forbid_unknown_fields=True):
    index: Annotated[int, msgspec.Meta(ge=0, le=63)]
    sku: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    device_uuid: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class NodeRegister(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    gpus: list[GpuIn]
    provider: Literal["static", "simulated-cloud"] = "static"
    agent_url: str | None = None


class NodeRegistered(msgspec.Struct):
    node_id: uuid.UUID
    credential: str


class NodeSync(msgspec.Struct, forbid_unknown_fields=True):
    """Observed state: allocation id -> provisioning | running | failed."""

    allocations: dict[str, Literal["provisioning", "running", "failed"]] = {}
    # Long poll: when nothing differs, hold the answer until the node's desired state
    # changes or GPUCLOUD_NODE_SYNC_HOLD_S passes (both ends are heartbeats).
    hold: bool = False
    # Optional (older agents omit it): allocation id -> when its workload was last seen
    # active (simulated nodes: it used CPU). Feeds the idle stop.
    activity: dict[str, dt.datetime] = {}
    # Optional: allocation id -> why the agent refused to run it (the bundle failed its
    # verification after pulling: gpucloud_trust reason codes such as blob-digest).
    failures: dict[str, Annotated[str, msgspec.Meta(max_length=64)]] = {}


class DesiredBundle(msgspec.Struct):
    """What the agent pulls from registry and verifies before running it."""

    tenant_id: uuid.UUID  # the app's namespace (00000000-...: the platform-public one)
    project_id: uuid.UUID | None  # the app's project; null in the platform-public namespace
    app: str
    version: str
    digest: str
    channel: str


class DesiredAllocation(msgspec.Struct):
    id: uuid.UUID
    sku: str
    mig_profile: str | None
    state: str
    instances: list[InstanceOut]
    bundle: DesiredBundle | None = None


class DesiredState(msgspec.Struct):
    node_id: uuid.UUID
    allocations: list[DesiredAllocation]


class NodeOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    provider: str
    state: str
    gpu_count: int
    last_heartbeat_at: dt.datetime
    sku: str | None = None


class LaunchPolicyIn(msgspec.Struct, forbid_unknown_fields=True):
    # The channel a bundle named by a launch must be promoted to.
    required_channel: Channel = "stable"
    # Refuse launches that name no bundle (the node's configured workload).
    require_bundle: bool = False


class LaunchPolicyOut(msgspec.Struct):
    tenant_id: uuid.UUID
    project_id: uuid.UUID
    required_channel: str
    require_bundle: bool
    # False: none is set and the default applies (stable; bundles optional).
    configured: bool
