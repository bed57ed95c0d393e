"""Reconciliation: make the node's local workloads match gpuaas's desired state.

For each desired allocation the agent creates its MIG instances (simulated: a stable
`MIG-<uuid>` handle per instance; a real backend would call NVML's GPU/compute instance
creation) and starts the workload as a local process with CUDA_VISIBLE_DEVICES set to the
GPU or MIG UUIDs. An allocation no longer desired is stopped and its instances destroyed.
Observed state (allocation id -> running | failed) goes back to gpuaas on the next sync.

Local state is written to a JSON file after every change, so a restarted agent adopts its
still-running processes and restarts the ones that died.
"""

import contextlib
import dataclasses
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
DEFAULT_WORKLOAD = f"{shlex.quote(sys.executable)} -c 'import time; time.sleep(10**9)'"
_MIG_NAMESPACE = uuid.UUID("5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d")


def mig_uuid(gpu_uuid: str, start: int, profile_id: int) -> str:
    return f"MIG-{uuid.uuid5(_MIG_NAMESPACE, f'{gpu_uuid}/{start}/{profile_id}')}"


def device_env(instances: list[dict[str, Any]]) -> dict[str, str]:
    """CUDA_VISIBLE_DEVICES for the allocation: whole GPUs by UUID, MIG slices by MIG UUID."""
    devices = [
        i["device_uuid"]
        if i.get("profile_id") is None
        else mig_uuid(i["device_uuid"], i["start"], i["profile_id"])
        for i in instances
    ]
    return {"CUDA_VISIBLE_DEVICES": ",".join(devices), "NVIDIA_VISIBLE_DEVICES": ",".join(devices)}


@dataclasses.dataclass
class Workload:
    allocation_id: str
    pid: int
    devices: str
    process: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        return True

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGTERM)
        if self.process is not None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.process.wait()


class Reconciler:
    def __init__(self, state_file: Path, workload_command: str = DEFAULT_WORKLOAD) -> None:
        self.state_file = state_file
        self.command = workload_command
        self.workloads: dict[str, Workload] = {}
        self.failed: set[str] = set()
        self._load()

    def _load(self) -> None:
        if not self.state_file.exists():
            return
        try:
            saved = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return
        for item in saved.get("workloads", []):
            w = Workload(item["allocation_id"], item["pid"], item["devices"])
            if w.alive():
                self.workloads[w.allocation_id] = w  # adopted after an agent restart

    def _save(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "workloads": [
                        {"allocation_id": w.allocation_id, "pid": w.pid, "devices": w.devices}
                        for w in self.workloads.values()
                    ]
                }
            )
        )
        tmp.replace(self.state_file)

    def observed(self) -> dict[str, str]:
        out = {a: ("running" if w.alive() else "failed") for a, w in self.workloads.items()}
        out.update({a: "failed" for a in self.failed})
        return out

    def reconcile(self, desired: list[dict[str, Any]]) -> bool:
        """Converge once; True when anything changed (worth an immediate report)."""
        changed = False
        wanted = {d["id"]: d for d in desired}
        for allocation_id in list(self.workloads):
            if allocation_id not in wanted:
                self.workloads.pop(allocation_id).stop()
                changed = True
        self.failed &= set(wanted)
        for allocation_id, d in wanted.items():
            w = self.workloads.get(allocation_id)
            if w is not None and w.alive():
                continue
            if w is not None:
                # Died under us: start it again rather than lose the allocation.
                self.workloads.pop(allocation_id)
            try:
                self.workloads[allocation_id] = self._start(allocation_id, d["instances"])
                self.failed.discard(allocation_id)
            except OSError as exc:
                log.error("workload did not start", extra={"fields": {"error": repr(exc)}})
                self.failed.add(allocation_id)
            changed = True
        if changed:
            self._save()
        return changed

    def _start(self, allocation_id: str, instances: list[dict[str, Any]]) -> Workload:
        env = {**os.environ, **device_env(instances), "GPUCLOUD_ALLOCATION_ID": allocation_id}
        process = subprocess.Popen(  # noqa: S602 - the operator-configured workload command
            self.command,
            shell=True,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return Workload(allocation_id, process.pid, env["CUDA_VISIBLE_DEVICES"], process)

    def stop_all(self) -> None:
        """On agent shutdown the workloads keep running (a restart adopts them)."""
        self._save()
