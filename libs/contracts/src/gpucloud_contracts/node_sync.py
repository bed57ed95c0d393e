"""The HTTP contract between gpuaas and its node agents: registration and the sync call.

Hand-written (these are request/response bodies, not events): gpuaas's routes
(`POST /v1/gpu/nodes/register`, `POST /v1/gpu/nodes/{node_id}/sync`) decode and answer
these Structs, and the node agent encodes its requests and decodes gpuaas's answers with
the same ones, so both sides agree by construction and gpuaas's OpenAPI document shows them.

- `NodeRegister` -> `NodeRegistered`: the agent's inventory (bootstrap token) in, the node's
  own credential out.
- `NodeSync` -> `DesiredState`: observed state in (also the heartbeat; `hold` asks gpuaas to
  hold the answer until the desired state differs), desired allocations out.

Adding a field: make it optional with a default on the receiving side first (gpuaas refuses
unknown fields, so gpuaas is upgraded before the agents that send it).
"""

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec


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


class NodeSync(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Observed state: allocation id -> provisioning | running | failed."""

    allocations: dict[str, Literal["provisioning", "running", "failed"]] = {}
    # Long poll: when nothing differs, hold the answer until the node's desired state
    # changes or GPUCLOUD_NODE_SYNC_HOLD_S passes (both ends are heartbeats).
    hold: bool = False
    # Optional (older agents omit it): allocation id -> when its workload was last seen
    # active (simulated nodes: it used CPU). Feeds the idle stop.
    activity: dict[str, dt.datetime] = {}
    # Optional: allocation id -> why the agent refused to run it (its bundle failed the
    # re-verification before running: a gpucloud_trust reason code such as blob-digest).
    failures: dict[str, Annotated[str, msgspec.Meta(max_length=64)]] = {}
    # Optional: allocation id -> its workload's readiness (allocations with a runtime: app
    # replicas). `starting` until the probe first passes; `unready` after
    # `failure_threshold` failures in a row or when the process exited (it is restarted).
    readiness: dict[str, Literal["starting", "ready", "unready"]] = {}
    # Optional: allocation id -> why it is unready (`probe_failed`, `process_exited`).
    readiness_reasons: dict[str, Annotated[str, msgspec.Meta(max_length=64)]] = {}
    # Optional: allocation id -> {declared port (as text): the host port the agent assigned}.
    ports: dict[str, dict[str, int]] = {}


class InstanceOut(msgspec.Struct):
    gpu_index: int
    device_uuid: str
    start: int
    memory_slices: int
    compute_slices: int
    profile_id: int | None = None


class BundleKey(msgspec.Struct):
    """A publisher key of the bundle's namespace as gpuaas's projection holds it."""

    public_key: str  # the raw 32-byte Ed25519 key, standard base64
    status: str  # active | rotated | revoked
    expires_at: dt.datetime | None = None


class DesiredBundle(msgspec.Struct):
    """The signed, promoted bundle to run, with what the agent needs to verify it again
    offline before it starts anything (gpucloud_trust.gate.check_launch, then the bytes)."""

    tenant_id: uuid.UUID  # the app's namespace (00000000-...: the platform-public one)
    app: str
    version: str
    digest: str  # the manifest digest the launch named
    channel: str  # the channel the project required
    envelopes: list[str]  # the release statements' DSSE JSON, as registry stored them
    keys: list[BundleKey]
    thresholds: dict[str, int] = {}


class WorkloadPort(msgspec.Struct):
    """A port the app declares: its name (`PORT_<NAME>`), the declared number (the connect
    URL's), the protocol, and whether the connect URL serves it."""

    name: str
    port: int
    protocol: str = "http"
    expose: bool = False


class WorkloadProbe(msgspec.Struct):
    """HTTP readiness probe: GET http://127.0.0.1:<host port of `port`><path>."""

    port: int
    path: str
    interval_s: float = 5.0
    timeout_s: float = 1.0
    initial_delay_s: float = 0.0
    failure_threshold: int = 3
    headers: dict[str, str] | None = None


class WorkloadRuntime(msgspec.Struct):
    """How the agent runs the bundle (the app replica's runtime, as appplatform sent it):
    argv (`${PORT}` / `${PORT_<NAME>}` expand to the assigned host ports), environment,
    ports and probe. Lenient on purpose (no forbid_unknown_fields): an agent older than a
    new runtime field still runs the workload."""

    command: list[str]
    ports: list[WorkloadPort] = []
    env: dict[str, str] | None = None
    probe: WorkloadProbe | None = None


class DesiredAllocation(msgspec.Struct):
    id: uuid.UUID
    sku: str
    mig_profile: str | None
    state: str
    instances: list[InstanceOut]
    bundle: DesiredBundle | None = None
    # An app replica: run the bundle with this runtime (None: the node's configured workload).
    runtime: WorkloadRuntime | None = None


class DesiredState(msgspec.Struct):
    node_id: uuid.UUID
    allocations: list[DesiredAllocation]
