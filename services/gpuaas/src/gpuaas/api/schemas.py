"""Request and response bodies of gpuaas's HTTP API (msgspec Structs)."""

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

from gpucloud_contracts.node_sync import (  # the node agent's contract, shared with it
    DesiredAllocation,
    DesiredState,
    GpuIn,
    InstanceOut,
    NodeRegister,
    NodeRegistered,
    NodeSync,
    WorkloadRuntime,
)

__all__ = [
    "AllocationCreate",
    "AllocationOut",
    "AllocationPage",
    "BundleIn",
    "BundleOut",
    "DesiredAllocation",
    "DesiredState",
    "GpuIn",
    "InstanceOut",
    "LaunchPolicyIn",
    "LaunchPolicyOut",
    "NodeOut",
    "NodeRegister",
    "NodeRegistered",
    "NodeSync",
    "ProfileAvailability",
    "QuotaIn",
    "QuotaOut",
    "SkuOut",
    "WorkloadRuntime",
]


class BundleIn(msgspec.Struct, forbid_unknown_fields=True):
    """A registry release to run: an app of this project (namespace `tenant`) or of the
    platform-public catalog (`platform`), its version, and the bundle digest expected."""

    app: Annotated[str, msgspec.Meta(pattern="^[a-z0-9][a-z0-9-]{0,62}$")]
    version: Annotated[str, msgspec.Meta(min_length=5, max_length=128)]
    digest: Annotated[str, msgspec.Meta(pattern="^sha256:[0-9a-f]{64}$")]
    namespace: Literal["tenant", "platform"] = "tenant"


class BundleOut(msgspec.Struct):
    tenant_id: uuid.UUID  # the app's namespace (00000000-...: platform-public)
    app: str
    version: str
    digest: str
    channel: str  # the channel the project required when the launch passed the gate
    # registry yanked this release since the launch: new launches of it are refused, this
    # allocation keeps running until it is released
    yanked: bool = False
    # null: a launch of this release in this project and channel would pass the launch gate
    # now; else the gate's reason to refuse it (yanked, revoked, expired, below-threshold,
    # untrusted): registry changed the release or its signer keys since the launch. The
    # allocation keeps running until it is released.
    refusal: str | None = None


class LaunchPolicyIn(msgspec.Struct, forbid_unknown_fields=True):
    # The channel a bundle named by a launch in the project must be promoted to.
    required_channel: Literal["dev", "staging", "stable"]


class LaunchPolicyOut(msgspec.Struct):
    tenant_id: uuid.UUID
    project_id: uuid.UUID
    required_channel: str
    # False: none was set and the default (stable) applies.
    configured: bool


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
    # An app replica's allocation (appplatform asked for it): its replica and instance, and
    # its workload's readiness as its node last reported it (starting | ready | unready).
    replica_id: uuid.UUID | None = None
    instance_id: uuid.UUID | None = None
    readiness: str | None = None
    readiness_reason: str | None = None


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


class NodeOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    provider: str
    state: str
    gpu_count: int
    last_heartbeat_at: dt.datetime
    sku: str | None = None
