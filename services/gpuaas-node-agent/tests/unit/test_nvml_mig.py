"""NvmlMig against a recording stand-in of the pynvml module boundary: the calls it makes,
their arguments, and how NVML's errors come back. The stand-in keeps pynvml's own
constants, error classes and placement struct, and models one H100's MIG geometry
(mig.md) so that overlapping placements fail the way the driver does."""

import dataclasses
import sys
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from node_agent.mig import PROFILES, MigError, NvmlMig, Slice
from node_agent.reconcile import Reconciler

# NVML's profile index -> the id an H100 reports for it (nvidia-smi mig -lgip).
H100_IDS = {0: 19, 7: 20, 9: 15, 1: 14, 2: 9, 3: 5, 4: 0}
MEMORY = {19: 1, 20: 1, 15: 2, 14: 2, 9: 4, 5: 4, 0: 8}
STARTS = {19: range(7), 20: range(7), 15: (0, 2, 4, 6), 14: (0, 2, 4), 9: (0, 4), 5: (0,), 0: (0,)}


@dataclasses.dataclass
class Gi:
    gpu: str
    id: int
    profile_id: int
    start: int
    ci: int | None = None


class FakeNvml:
    """Only the functions NvmlMig may call; anything else is an AttributeError."""

    def __init__(self, gpus: dict[str, bool]) -> None:
        for name in dir(pynvml):
            if name.startswith(("NVML_", "NVMLError")) or name == "c_nvmlGpuInstancePlacement_t":
                setattr(self, name, getattr(pynvml, name))
        self.mig_enabled = dict(gpus)
        self.order = list(gpus)
        self.instances: dict[tuple[str, int], Gi] = {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail_compute = False
        self.in_use: set[str] = set()

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    def called(self, name: str) -> list[tuple[Any, ...]]:
        return [args for n, args in self.calls if n == name]

    def nvmlInit(self) -> None:
        self._call("nvmlInit")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.order)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return self.order[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        self._call("nvmlDeviceGetHandleByUUID", uuid)
        if uuid not in self.mig_enabled:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return uuid

    def nvmlDeviceGetUUID(self, handle: Any) -> bytes:
        if isinstance(handle, Gi):
            return f"MIG-{handle.gpu}-{handle.id}".encode()
        return handle.encode()

    def nvmlDeviceGetMigMode(self, device: str) -> list[int]:
        mode = int(self.mig_enabled[device])
        return [mode, mode]

    def nvmlDeviceGetGpuInstanceProfileInfo(self, device: str, profile: int) -> Any:
        self._call("nvmlDeviceGetGpuInstanceProfileInfo", device, profile)
        return SimpleNamespace(id=H100_IDS[profile])

    def nvmlDeviceCreateGpuInstanceWithPlacement(self, device: str, pid: int, placement):
        self._call(
            "nvmlDeviceCreateGpuInstanceWithPlacement", device, pid, placement.start, placement.size
        )
        if placement.start not in STARTS[pid] or placement.size != MEMORY[pid]:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        wanted = set(range(placement.start, placement.start + placement.size))
        for gi in self.instances.values():
            if gi.gpu == device and wanted & set(range(gi.start, gi.start + MEMORY[gi.profile_id])):
                raise pynvml.NVMLError(pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES)
        gi_id = 1 + max((g.id for g in self.instances.values() if g.gpu == device), default=0)
        gi = Gi(device, gi_id, pid, placement.start)
        self.instances[(device, gi_id)] = gi
        return gi

    def nvmlGpuInstanceGetComputeInstanceProfileInfo(self, gi: Gi, profile: int, engine: int):
        self._call("nvmlGpuInstanceGetComputeInstanceProfileInfo", gi.id, profile, engine)
        return SimpleNamespace(id=profile)

    def nvmlGpuInstanceCreateComputeInstance(self, gi: Gi, ci_profile_id: int) -> Gi:
        self._call("nvmlGpuInstanceCreateComputeInstance", gi.id, ci_profile_id)
        if self.fail_compute:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES)
        gi.ci = 0
        return gi

    def nvmlGpuInstanceGetInfo(self, gi: Gi) -> Any:
        size = MEMORY[gi.profile_id]
        return SimpleNamespace(
            id=gi.id, profileId=gi.profile_id, placement=SimpleNamespace(start=gi.start, size=size)
        )

    def nvmlComputeInstanceGetInfo(self, ci: Gi) -> Any:
        return SimpleNamespace(id=ci.ci)

    def nvmlDeviceGetMaxMigDeviceCount(self, device: str) -> int:
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: str, index: int) -> Gi:
        visible = sorted(
            (g for g in self.instances.values() if g.gpu == device and g.ci is not None),
            key=lambda g: g.id,
        )
        if index >= len(visible):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return visible[index]

    def nvmlDeviceGetGpuInstanceId(self, mig: Gi) -> int:
        return mig.id

    def nvmlDeviceGetComputeInstanceId(self, mig: Gi) -> int:
        assert mig.ci is not None
        return mig.ci

    def nvmlDeviceGetGpuInstanceById(self, device: str, gi_id: int) -> Gi:
        return self.instances[(device, gi_id)]

    def nvmlGpuInstanceGetComputeInstanceById(self, gi: Gi, ci_id: int) -> Gi:
        return gi

    def nvmlComputeInstanceDestroy(self, ci: Gi) -> None:
        self._call("nvmlComputeInstanceDestroy", ci.id)
        if f"MIG-{ci.gpu}-{ci.id}" in self.in_use:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_IN_USE)
        ci.ci = None

    def nvmlGpuInstanceDestroy(self, gi: Gi) -> None:
        self._call("nvmlGpuInstanceDestroy", gi.id)
        if gi.ci is not None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_IN_USE)
        del self.instances[(gi.gpu, gi.id)]


@pytest.fixture
def nvml() -> FakeNvml:
    return FakeNvml({"GPU-0": True, "GPU-1": False})


class TestNvmlMig:
    def test_every_catalog_profile_maps_to_an_nvml_profile(self, nvml):
        for profile in PROFILES.values():
            index = getattr(pynvml, profile.gpu_instance_profile)
            assert H100_IDS[index] == profile.profile_id
            assert MEMORY[profile.profile_id] == profile.memory_slices

    def test_create_places_a_gpu_instance_and_a_compute_instance(self, nvml):
        mig = NvmlMig(nvml)
        handle = mig.create(Slice("GPU-0", 4, 14))
        assert handle == "MIG-GPU-0-1"
        assert nvml.called("nvmlDeviceGetGpuInstanceProfileInfo") == [
            ("GPU-0", pynvml.NVML_GPU_INSTANCE_PROFILE_2_SLICE)
        ]
        assert nvml.called("nvmlDeviceCreateGpuInstanceWithPlacement") == [("GPU-0", 14, 4, 2)]
        assert nvml.called("nvmlGpuInstanceGetComputeInstanceProfileInfo") == [
            (
                1,
                pynvml.NVML_COMPUTE_INSTANCE_PROFILE_2_SLICE,
                pynvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED,
            )
        ]
        assert len(nvml.called("nvmlInit")) == 1

    def test_the_media_extension_profile(self, nvml):
        NvmlMig(nvml).create(Slice("GPU-0", 6, 20))
        assert nvml.called("nvmlDeviceGetGpuInstanceProfileInfo") == [
            ("GPU-0", pynvml.NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1)
        ]
        assert nvml.called("nvmlDeviceCreateGpuInstanceWithPlacement") == [("GPU-0", 20, 6, 1)]

    def test_create_is_idempotent_and_adopts_an_existing_instance(self, nvml):
        mig = NvmlMig(nvml)
        first = mig.create(Slice("GPU-0", 0, 9))
        assert NvmlMig(nvml).create(Slice("GPU-0", 0, 9)) == first  # e.g. after a restart
        assert len(nvml.called("nvmlDeviceCreateGpuInstanceWithPlacement")) == 1

    def test_occupied_slices_are_a_reported_failure(self, nvml):
        mig = NvmlMig(nvml)
        mig.create(Slice("GPU-0", 0, 9))
        with pytest.raises(MigError, match="in use or the placement is invalid"):
            mig.create(Slice("GPU-0", 2, 14))

    def test_a_gpu_without_mig_mode_is_refused_and_never_switched(self, nvml):
        with pytest.raises(MigError, match="MIG mode is disabled"):
            NvmlMig(nvml).create(Slice("GPU-1", 0, 19))
        assert not nvml.called("nvmlDeviceCreateGpuInstanceWithPlacement")

    def test_a_failed_compute_instance_leaves_no_gpu_instance(self, nvml):
        nvml.fail_compute = True
        with pytest.raises(MigError):
            NvmlMig(nvml).create(Slice("GPU-0", 0, 19))
        assert nvml.called("nvmlGpuInstanceDestroy") == [(1,)] and nvml.instances == {}

    def test_unknown_profiles_and_gpus(self, nvml):
        with pytest.raises(MigError, match="unknown MIG profile"):
            NvmlMig(nvml).create(Slice("GPU-0", 0, 42))
        with pytest.raises(MigError, match="NVML error"):
            NvmlMig(nvml).create(Slice("GPU-9", 0, 19))

    def test_destroy_and_list(self, nvml):
        mig = NvmlMig(nvml)
        mig.create(Slice("GPU-0", 0, 9))
        mig.create(Slice("GPU-0", 4, 9))
        assert {i.slice for i in mig.existing()} == {Slice("GPU-0", 0, 9), Slice("GPU-0", 4, 9)}
        mig.destroy(Slice("GPU-0", 4, 9))
        assert nvml.called("nvmlComputeInstanceDestroy") == [(2,)]
        assert nvml.called("nvmlGpuInstanceDestroy") == [(2,)]
        assert [i.slice for i in mig.existing()] == [Slice("GPU-0", 0, 9)]
        mig.destroy(Slice("GPU-0", 4, 9))  # already gone: nothing to do
        assert len(nvml.called("nvmlGpuInstanceDestroy")) == 1


SLEEP = f"{sys.executable} -c 'import time; time.sleep(600)'"


class TestReconcilerOnNvml:
    """The reconciler is the same code on both drivers; here it drives the NVML one."""

    def test_instances_follow_the_allocation(self, nvml, tmp_path, desired):
        r = Reconciler(tmp_path / "s.json", SLEEP, NvmlMig(nvml))
        try:
            assert r.reconcile([desired("a1", ("GPU-0", 0, 19), ("GPU-0", 1, 19))])
            assert r.observed() == {"a1": "running"}
            assert r.workloads["a1"].devices == "MIG-GPU-0-1,MIG-GPU-0-2"
            assert len(nvml.instances) == 2
        finally:
            r.reconcile([])
        assert nvml.instances == {} and r.observed() == {}

    def test_a_placement_the_gpu_refuses_is_reported_failed_and_not_retried(
        self, nvml, tmp_path, desired
    ):
        NvmlMig(nvml).create(Slice("GPU-0", 0, 0))  # 7g: the whole GPU is taken
        r = Reconciler(tmp_path / "s.json", SLEEP, NvmlMig(nvml))
        r._swept = True  # keep the 7g (not an orphan sweep test)
        assert r.reconcile([desired("a1", ("GPU-0", 6, 19))])
        assert r.observed() == {"a1": "failed"}
        assert not r.reconcile([desired("a1", ("GPU-0", 6, 19))])
        assert len(nvml.called("nvmlDeviceCreateGpuInstanceWithPlacement")) == 2

    def test_a_partly_made_allocation_gives_its_slices_back(self, nvml, tmp_path, desired):
        r = Reconciler(tmp_path / "s.json", SLEEP, NvmlMig(nvml))
        r.reconcile([desired("a1", ("GPU-0", 0, 19), ("GPU-1", 0, 19))])  # GPU-1: MIG off
        assert r.observed() == {"a1": "failed"} and nvml.instances == {}

    def test_a_restart_keeps_owned_instances_and_destroys_orphans(self, nvml, tmp_path, desired):
        r = Reconciler(tmp_path / "s.json", SLEEP, NvmlMig(nvml))
        r.reconcile([desired("a1", ("GPU-0", 0, 9))])
        NvmlMig(nvml).create(Slice("GPU-0", 4, 9))  # made, then the agent crashed before saving
        try:
            restarted = Reconciler(tmp_path / "s.json", SLEEP, NvmlMig(nvml))
            assert not restarted.reconcile([desired("a1", ("GPU-0", 0, 9))])
            assert [(g.start, g.profile_id) for g in nvml.instances.values()] == [(0, 9)]
            assert restarted.workloads["a1"].pid == r.workloads["a1"].pid
        finally:
            r.reconcile([])

    def test_an_instance_still_in_use_is_destroyed_later(self, nvml, tmp_path, desired):
        r = Reconciler(tmp_path / "s.json", SLEEP, NvmlMig(nvml))
        r.reconcile([desired("a1", ("GPU-0", 0, 19))])
        nvml.in_use.add("MIG-GPU-0-1")
        assert r.reconcile([])
        assert r.undestroyed == {Slice("GPU-0", 0, 19)} and len(nvml.instances) == 1
        nvml.in_use.clear()
        r.reconcile([])
        assert r.undestroyed == set() and nvml.instances == {}
