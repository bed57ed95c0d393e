"""MIG instance management behind one interface, so the reconciler above it is one code
path: `NvmlMig` creates real GPU and compute instances through NVML (nvidia-ml-py) on a
node with a driver; `SimulatedMig` hands out stable `MIG-<uuid>` handles on a simulated
node (the declared inventory). `mig_driver_for(discovery)` picks the one that matches how
the node's GPUs were discovered.

A slice in gpuaas's desired state is (GPU UUID, start, profile id), where the profile id
is the GPU instance profile id NVML reports (mig.md: 19 = 1g, 20 = 1g+me, 15 = 1g with two
memory slices, 14 = 2g, 9 = 3g, 5 = 4g, 0 = 7g). NVML creates instances by profile *index*
(NVML_GPU_INSTANCE_PROFILE_1_SLICE, ...), so each id maps to its index and the id the
device reports for that index is checked against it before anything is created.

The agent never switches MIG mode (that needs a GPU reset with no clients): a GPU with
MIG disabled refuses MIG slices with a reported failure.
"""

import dataclasses
import logging
import threading
import uuid
from typing import Any, Protocol

from node_agent.discovery import NvmlDiscovery

log = logging.getLogger(__name__)
_MIG_NAMESPACE = uuid.UUID("5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d")


@dataclasses.dataclass(frozen=True)
class MigProfile:
    """How NVML names one catalog profile: its GPU and compute instance profile indexes."""

    profile_id: int
    gpu_instance_profile: str  # name of the pynvml constant
    compute_instance_profile: str
    memory_slices: int


PROFILES = {
    p.profile_id: p
    for p in (
        MigProfile(
            19, "NVML_GPU_INSTANCE_PROFILE_1_SLICE", "NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE", 1
        ),
        MigProfile(
            20, "NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1", "NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE", 1
        ),
        MigProfile(
            15, "NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2", "NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE", 2
        ),
        MigProfile(
            14, "NVML_GPU_INSTANCE_PROFILE_2_SLICE", "NVML_COMPUTE_INSTANCE_PROFILE_2_SLICE", 2
        ),
        MigProfile(
            9, "NVML_GPU_INSTANCE_PROFILE_3_SLICE", "NVML_COMPUTE_INSTANCE_PROFILE_3_SLICE", 4
        ),
        MigProfile(
            5, "NVML_GPU_INSTANCE_PROFILE_4_SLICE", "NVML_COMPUTE_INSTANCE_PROFILE_4_SLICE", 4
        ),
        MigProfile(
            0, "NVML_GPU_INSTANCE_PROFILE_7_SLICE", "NVML_COMPUTE_INSTANCE_PROFILE_7_SLICE", 8
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class Slice:
    """One MIG instance on one GPU, as gpuaas places it."""

    gpu_uuid: str
    start: int
    profile_id: int


@dataclasses.dataclass(frozen=True)
class MigInstance:
    slice: Slice
    mig_uuid: str


class MigError(RuntimeError):
    """The instance could not be created or destroyed; the allocation is reported failed."""


class MigDriver(Protocol):
    def create(self, s: Slice) -> str:
        """The MIG device UUID of the instance at that placement (created if missing)."""
        ...

    def destroy(self, s: Slice) -> None:
        """Destroy the instance at that placement (nothing if there is none)."""
        ...

    def existing(self) -> list[MigInstance]:
        """Every instance on the node's GPUs now (to find orphans after a restart)."""
        ...


def simulated_mig_uuid(gpu_uuid: str, start: int, profile_id: int) -> str:
    return f"MIG-{uuid.uuid5(_MIG_NAMESPACE, f'{gpu_uuid}/{start}/{profile_id}')}"


class SimulatedMig:
    """Stable handles and no hardware: a restarted agent computes the same UUIDs."""

    def create(self, s: Slice) -> str:
        if s.profile_id not in PROFILES:
            raise MigError(f"unknown MIG profile id {s.profile_id}")
        return simulated_mig_uuid(s.gpu_uuid, s.start, s.profile_id)

    def destroy(self, s: Slice) -> None:
        return None

    def existing(self) -> list[MigInstance]:
        return []


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlMig:
    """Real instances through NVML. `nvml` is the pynvml module (a stand-in in tests)."""

    def __init__(self, nvml: Any = None) -> None:
        if nvml is None:
            import pynvml  # only nodes with a driver get this far

            nvml = pynvml
        self.nvml = nvml
        self._initialized = False
        # NVML instance management is not safe to interleave on one GPU.
        self._lock = threading.Lock()

    def _init(self) -> None:
        if not self._initialized:
            self.nvml.nvmlInit()  # reference counted by NVML; held for the agent's life
            self._initialized = True

    def _device(self, gpu_uuid: str) -> Any:
        self._init()
        return self.nvml.nvmlDeviceGetHandleByUUID(gpu_uuid)

    def _failure(self, action: str, s: Slice, exc: Exception) -> MigError:
        n = self.nvml
        code = getattr(exc, "value", None)
        reasons = {
            n.NVML_ERROR_INSUFFICIENT_RESOURCES: (
                "the slices are in use or the placement is invalid"
            ),
            n.NVML_ERROR_NO_PERMISSION: "the agent lacks the permission (it must run as root)",
            n.NVML_ERROR_NOT_SUPPORTED: "the GPU does not support this MIG profile",
            n.NVML_ERROR_IN_USE: "the instance is in use by a process",
            n.NVML_ERROR_INVALID_ARGUMENT: "NVML refused the profile or placement",
        }
        reason = reasons.get(code, f"NVML error {exc}")
        return MigError(
            f"{action} MIG profile {s.profile_id} at start {s.start} on {s.gpu_uuid}: {reason}"
        )

    def create(self, s: Slice) -> str:
        profile = PROFILES.get(s.profile_id)
        if profile is None:
            raise MigError(f"unknown MIG profile id {s.profile_id}")
        n = self.nvml
        with self._lock:
            try:
                device = self._device(s.gpu_uuid)
                current, _pending = n.nvmlDeviceGetMigMode(device)
                if current != n.NVML_DEVICE_MIG_ENABLE:
                    raise MigError(f"MIG mode is disabled on {s.gpu_uuid}")
                for instance in self._list(device, s.gpu_uuid):
                    if instance.slice == s:
                        return instance.mig_uuid  # adopted: created before a restart
                info = n.nvmlDeviceGetGpuInstanceProfileInfo(
                    device, getattr(n, profile.gpu_instance_profile)
                )
                if info.id != s.profile_id:
                    raise MigError(
                        f"{s.gpu_uuid} reports profile id {info.id} for "
                        f"{profile.gpu_instance_profile}, not {s.profile_id}"
                    )
                placement = n.c_nvmlGpuInstancePlacement_t()
                placement.start, placement.size = s.start, profile.memory_slices
                gpu_instance = n.nvmlDeviceCreateGpuInstanceWithPlacement(
                    device, info.id, placement
                )
                try:
                    ci_info = n.nvmlGpuInstanceGetComputeInstanceProfileInfo(
                        gpu_instance,
                        getattr(n, profile.compute_instance_profile),
                        n.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED,
                    )
                    compute_instance = n.nvmlGpuInstanceCreateComputeInstance(
                        gpu_instance, ci_info.id
                    )
                except n.NVMLError:
                    # No half-made instance: a GPU instance without compute is invisible
                    # to the MIG device listing and would hold its slices forever.
                    n.nvmlGpuInstanceDestroy(gpu_instance)
                    raise
                gi_id = n.nvmlGpuInstanceGetInfo(gpu_instance).id
                ci_id = n.nvmlComputeInstanceGetInfo(compute_instance).id
                for mig_device, ids in self._mig_devices(device):
                    if ids == (gi_id, ci_id):
                        return _text(n.nvmlDeviceGetUUID(mig_device))
                raise MigError(f"the new instance on {s.gpu_uuid} has no MIG device")
            except n.NVMLError as exc:
                raise self._failure("cannot create", s, exc) from None

    def destroy(self, s: Slice) -> None:
        n = self.nvml
        with self._lock:
            try:
                device = self._device(s.gpu_uuid)
                for _mig_device, (gi_id, ci_id) in self._mig_devices(device):
                    gpu_instance = n.nvmlDeviceGetGpuInstanceById(device, gi_id)
                    info = n.nvmlGpuInstanceGetInfo(gpu_instance)
                    if (info.profileId, info.placement.start) != (s.profile_id, s.start):
                        continue
                    compute = n.nvmlGpuInstanceGetComputeInstanceById(gpu_instance, ci_id)
                    n.nvmlComputeInstanceDestroy(compute)
                    n.nvmlGpuInstanceDestroy(gpu_instance)
                    return
            except n.NVMLError as exc:
                raise self._failure("cannot destroy", s, exc) from None

    def existing(self) -> list[MigInstance]:
        n = self.nvml
        with self._lock:
            try:
                self._init()
                out: list[MigInstance] = []
                for index in range(n.nvmlDeviceGetCount()):
                    device = n.nvmlDeviceGetHandleByIndex(index)
                    try:
                        current, _pending = n.nvmlDeviceGetMigMode(device)
                    except n.NVMLError_NotSupported:
                        continue  # not MIG capable
                    if current == n.NVML_DEVICE_MIG_ENABLE:
                        out += self._list(device, _text(n.nvmlDeviceGetUUID(device)))
                return out
            except n.NVMLError as exc:
                raise MigError(f"cannot list MIG instances: {exc}") from None

    def _list(self, device: Any, gpu_uuid: str) -> list[MigInstance]:
        n = self.nvml
        out = []
        for mig_device, (gi_id, _ci_id) in self._mig_devices(device):
            info = n.nvmlGpuInstanceGetInfo(n.nvmlDeviceGetGpuInstanceById(device, gi_id))
            s = Slice(gpu_uuid, int(info.placement.start), int(info.profileId))
            out.append(MigInstance(s, _text(n.nvmlDeviceGetUUID(mig_device))))
        return out

    def _mig_devices(self, device: Any) -> list[tuple[Any, tuple[int, int]]]:
        """(MIG device handle, (GPU instance id, compute instance id)) for each one."""
        n = self.nvml
        out = []
        for index in range(n.nvmlDeviceGetMaxMigDeviceCount(device)):
            try:
                mig_device = n.nvmlDeviceGetMigDeviceHandleByIndex(device, index)
            except n.NVMLError_NotFound:
                continue
            ids = (
                int(n.nvmlDeviceGetGpuInstanceId(mig_device)),
                int(n.nvmlDeviceGetComputeInstanceId(mig_device)),
            )
            out.append((mig_device, ids))
        return out


def mig_driver_for(discovery: object) -> MigDriver:
    """Real instances when the GPUs came from NVML; simulated ones for a declared inventory."""
    return NvmlMig() if isinstance(discovery, NvmlDiscovery) else SimulatedMig()
