"""Reconciliation: make the node's local workloads match gpuaas's desired state.

For each desired allocation the agent creates its MIG instances through the node's MIG
driver (mig.py: NVML on a real GPU, stable simulated handles otherwise; this module is the
same for both) and starts the workload as a local process with CUDA_VISIBLE_DEVICES set to
the GPU or MIG UUIDs. An allocation no longer desired is stopped and its instances
destroyed. Observed state (allocation id -> running | failed) goes back to gpuaas on the
next sync; an allocation whose instances or process could not be made is reported failed
and not retried (gpuaas takes it down the failure path).

Local state is written to a JSON file after every change, so a restarted agent adopts its
still-running processes (and their instances) and restarts the ones that died. On the
first reconcile after a start, MIG instances no adopted workload owns (left by a crash
between creating them and saving the state) are destroyed, so their slices free up.

Each allocation's processes run as its own unprivileged user in a private working
directory (isolation.py) when the agent can switch users; release kills what is left of
them and frees the uid.

An allocation with a runtime (an app replica) runs its verified bundle instead
(workloads.py): the layers unpacked into its working directory, host ports assigned, the
argv run without a shell with its output in a bounded log, its readiness probed and
reported. Its process exiting is not a failure: it stays `running` for gpuaas, reported
`unready` (`process_exited`), and the next reconcile starts it again on the same ports.

Activity (for gpuaas's idle stop): a workload is active when its process group used CPU
since the previous sample (utime + stime of /proc/<pid>/stat). On NVML nodes GPU
utilisation could replace this later; the report's shape stays the same.
"""

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from gpucloud_contracts.node_sync import DesiredAllocation, InstanceOut, WorkloadRuntime
from node_agent.bundles import BundleError, check_runtime, verify_before_run
from node_agent.isolation import IsolationUnavailable, WorkloadAccounts, workload_environment
from node_agent.mig import MigDriver, MigError, SimulatedMig, Slice
from node_agent.workloads import (
    PROCESS_EXITED,
    STARTING,
    UNREADY,
    Prober,
    assign_ports,
    chown_tree,
    expand_argv,
    open_log,
    trim_log,
    unpack_layers,
    workload_env,
)

log = logging.getLogger(__name__)
# A stand-in workload any user can run (the agent's own interpreter may live in a
# directory only root can read).
DEFAULT_WORKLOAD = "exec sleep infinity"


@dataclasses.dataclass
class Workload:
    allocation_id: str
    pid: int
    devices: str
    process: subprocess.Popen[bytes] | None = None
    tenant_id: str | None = None  # kept from the saved state; gpuaas does not send it yet
    slices: tuple[Slice, ...] = ()  # the MIG instances made for it
    cpu_ticks: int | None = None  # the last CPU sample of its process group
    last_active_at: dt.datetime | None = None  # when a sample last showed CPU used
    # An app workload (the allocation has a runtime): declared port -> host port, and its
    # readiness prober (None until the desired state names the runtime, e.g. when adopted).
    app: bool = False
    ports: dict[str, int] = dataclasses.field(default_factory=dict)
    prober: Prober | None = None

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.prober is not None:
            self.prober.stop()
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGTERM)
        if self.process is not None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.process.wait()


def group_cpu_ticks(pgid: int, proc: Path = Path("/proc")) -> int:
    """CPU clock ticks (user + system) used by the live processes of a process group. The
    workload runs in its own session (its pid is the group id), so the shell and whatever
    it started all count."""
    total = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # Fields after the command name (which may hold spaces and parentheses).
        fields = raw[raw.rfind(")") + 2 :].split()
        if len(fields) > 12 and fields[2] == str(pgid):
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


class Reconciler:
    def __init__(
        self,
        state_file: Path,
        workload_command: str = DEFAULT_WORKLOAD,
        mig: MigDriver | None = None,
        accounts: WorkloadAccounts | None = None,
        bundle_dir: Path | None = None,
    ) -> None:
        self.state_file = state_file
        # Where pulled bundles are (an OCI image layout per manifest digest; bundles.py).
        self.bundle_dir = bundle_dir
        self.command = workload_command
        self.mig: MigDriver = mig or SimulatedMig()
        # Per-allocation users (None: workloads run as the agent, e.g. without root).
        self.accounts = accounts
        self.workloads: dict[str, Workload] = {}
        # The runtime of each desired app replica (the proxy reads its declared ports).
        self.runtimes: dict[str, WorkloadRuntime] = {}
        self.failed: set[str] = set()
        # Why a failed allocation's bundle was refused (reported to gpuaas with the state).
        self.failure_reasons: dict[str, str] = {}
        # Instances whose destruction failed (still in use, driver hiccup): retried.
        self.undestroyed: set[Slice] = set()
        self._swept = False
        # App workloads: their logs (agent-owned) and, without per-allocation users, their
        # working directories.
        self.logs_dir = state_file.parent / "logs" / state_file.stem
        self.workdirs = state_file.parent / "workloads" / state_file.stem
        self._load()

    def _load(self) -> None:
        if not self.state_file.exists():
            return
        try:
            saved = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return
        for item in saved.get("workloads", []):
            w = Workload(
                item["allocation_id"],
                item["pid"],
                item["devices"],
                tenant_id=item.get("tenant_id"),
                slices=tuple(Slice(*s) for s in item.get("slices", ())),
                app=bool(item.get("app")),
                ports={str(k): int(v) for k, v in (item.get("ports") or {}).items()},
            )
            if w.alive():
                self.workloads[w.allocation_id] = w  # adopted after an agent restart

    def _save(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "workloads": [
                        {
                            "allocation_id": w.allocation_id,
                            "pid": w.pid,
                            "devices": w.devices,
                            "tenant_id": w.tenant_id,
                            "slices": [dataclasses.astuple(s) for s in w.slices],
                            "app": w.app,
                            "ports": w.ports,
                        }
                        for w in self.workloads.values()
                    ]
                }
            )
        )
        tmp.replace(self.state_file)

    def observed(self) -> dict[str, str]:
        # A dead app workload is restarted by the next reconcile: still running (unready).
        out = {
            a: ("running" if w.app or w.alive() else "failed") for a, w in self.workloads.items()
        }
        out.update({a: "failed" for a in self.failed})
        return out

    def readiness(self) -> tuple[dict[str, str], dict[str, str]]:
        """App workloads: allocation id -> starting | ready | unready, and why unready."""
        states: dict[str, str] = {}
        reasons: dict[str, str] = {}
        for a, w in self.workloads.items():
            if not w.app or a in self.failed:
                continue
            if not w.alive():
                states[a], reasons[a] = UNREADY, PROCESS_EXITED
            elif w.prober is not None:
                states[a] = w.prober.readiness
                if w.prober.reason:
                    reasons[a] = w.prober.reason
        return states, reasons

    def ports(self) -> dict[str, dict[str, int]]:
        return {a: dict(w.ports) for a, w in self.workloads.items() if w.app and w.ports}

    def settled(self) -> bool:
        """No app workload is starting or dead: a held sync loses nothing worth reporting
        at once (a change during a hold is reported when it ends)."""
        states, _ = self.readiness()
        return all(state != STARTING and self.workloads[a].alive() for a, state in states.items())

    def log_path(self, allocation_id: str) -> Path:
        return self.logs_dir / f"{allocation_id}.log"

    def trim_logs(self) -> None:
        for allocation_id, w in self.workloads.items():
            if w.app:
                trim_log(self.log_path(allocation_id))

    def failures(self) -> dict[str, str]:
        return {a: r for a, r in self.failure_reasons.items() if a in self.failed}

    def activity(self, now: dt.datetime | None = None) -> dict[str, str]:
        """Allocation id -> when its workload was last seen using CPU (ISO 8601, UTC); only
        workloads seen active since the agent started (gpuaas starts the clock at running)."""
        now = now or dt.datetime.now(dt.UTC)
        out: dict[str, str] = {}
        for allocation_id, w in self.workloads.items():
            if not w.alive():
                continue
            ticks = group_cpu_ticks(w.pid)
            if w.cpu_ticks is not None and ticks > w.cpu_ticks:
                w.last_active_at = now
            w.cpu_ticks = ticks
            if w.last_active_at is not None:
                out[allocation_id] = w.last_active_at.isoformat()
        return out

    def reconcile(self, desired: list[DesiredAllocation]) -> bool:
        """Converge once; True when anything changed (worth an immediate report)."""
        changed = False
        wanted = {str(d.id): d for d in desired}
        self.runtimes = {a: d.runtime for a, d in wanted.items() if d.runtime is not None}
        if not self._swept:
            self._sweep_orphans()
            if self.accounts is not None:
                self.accounts.reclaim(set(wanted) | set(self.workloads))
        for allocation_id in list(self.workloads):
            if allocation_id not in wanted:
                self._release(self.workloads.pop(allocation_id))
                changed = True
        self.failed &= set(wanted)
        self.failure_reasons = {a: r for a, r in self.failure_reasons.items() if a in wanted}
        for allocation_id, d in wanted.items():
            if allocation_id in self.failed:
                continue  # reported; gpuaas decides what happens to it
            w = self.workloads.get(allocation_id)
            if w is not None and w.alive():
                if w.app and w.prober is None and d.runtime is not None:
                    # adopted after an agent restart: probe it again
                    w.prober = self._prober(d.runtime, w.ports, restarted=False)
                continue
            restarted = w is not None and w.app
            kept_ports = w.ports if w is not None else {}
            if w is not None:
                # Died under us: start it again (on the same instances) rather than lose it.
                self.workloads.pop(allocation_id)
                if w.prober is not None:
                    w.prober.stop()
                if restarted:
                    log.warning("workload exited; restarting it",
                                extra={"fields": {"allocation_id": allocation_id}})  # fmt: skip
            if d.runtime is not None and d.bundle is None:
                # an app runtime is only ever the signed manifest of a bundle
                log.error("app runtime without a bundle refused",
                          extra={"fields": {"allocation_id": allocation_id}})  # fmt: skip
                self.failed.add(allocation_id)
                self.failure_reasons[allocation_id] = "runtime-unsigned"
                changed = True
                continue
            if d.bundle is not None:
                try:
                    verify_before_run(d.bundle, self.bundle_dir)
                    if d.runtime is not None:
                        check_runtime(d.bundle, self.bundle_dir, d.runtime)
                except BundleError as refused:
                    # Nothing starts: no instance, no process (docs/gpuaas.md, launch gate).
                    log.error(
                        "bundle refused before running",
                        extra={"fields": {"allocation_id": allocation_id,
                                          "reason": refused.reason, "error": str(refused)}},
                    )  # fmt: skip
                    self.failed.add(allocation_id)
                    self.failure_reasons[allocation_id] = refused.reason
                    changed = True
                    continue
            try:
                if d.runtime is not None:
                    workload = self._start_app(allocation_id, d, kept_ports, restarted)
                else:
                    workload = self._start(allocation_id, d.instances)
            except BundleError as refused:
                log.error(
                    "bundle not unpacked",
                    extra={"fields": {"allocation_id": allocation_id, "error": str(refused)}},
                )
                self.failed.add(allocation_id)
                self.failure_reasons[allocation_id] = refused.reason
            except (OSError, MigError, IsolationUnavailable) as exc:
                log.error(
                    "allocation did not start",
                    extra={"fields": {"allocation_id": allocation_id, "error": str(exc)}},
                )
                self.failed.add(allocation_id)
            else:
                self.workloads[allocation_id] = workload
            changed = True
        if self.undestroyed:
            self._destroy(set(self.undestroyed))
        if changed:
            self._save()
        return changed

    def _devices(self, instances: list[InstanceOut], made: list[Slice]) -> str:
        devices: list[str] = []
        for i in instances:
            if i.profile_id is None:
                devices.append(i.device_uuid)  # a whole GPU
                continue
            s = Slice(i.device_uuid, i.start, i.profile_id)
            devices.append(self.mig.create(s))
            made.append(s)
        return ",".join(devices)

    def _start(self, allocation_id: str, instances: list[InstanceOut]) -> Workload:
        made: list[Slice] = []
        try:
            devices = self._devices(instances, made)
            process = subprocess.Popen(  # noqa: S602 - the operator-configured workload command
                self.command,
                shell=True,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                **self.process_options(allocation_id, devices),
            )
        except BaseException:
            self._destroy(set(made))
            if self.accounts is not None:
                self.accounts.release(allocation_id)
            raise
        return Workload(allocation_id, process.pid, devices, process, slices=tuple(made))

    def _start_app(
        self, allocation_id: str, d: DesiredAllocation, kept: dict[str, int], restarted: bool
    ) -> Workload:
        """An app replica: the verified bundle unpacked into the private working directory
        (while it is empty: the first start), host ports assigned, the runtime's argv run
        without a shell, its output in the allocation's bounded log, its readiness probed
        (workloads.py)."""
        runtime = d.runtime
        assert runtime is not None
        made: list[Slice] = []
        try:
            devices = self._devices(d.instances, made)
            options = self.process_options(allocation_id, devices)
            workdir = Path(options.get("cwd") or self.workdirs / allocation_id)
            if "cwd" not in options:
                workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
                options["cwd"] = workdir
            # Only into a fresh directory: a restart (or an agent restarted after the
            # process died) finds the tree the workload has been using, and writing into a
            # directory its user controls would race that user's own links.
            fresh = not any(workdir.iterdir())
            if d.bundle is not None and self.bundle_dir is not None and fresh:
                layout = self.bundle_dir / d.bundle.digest.removeprefix("sha256:")
                unpack_layers(layout, workdir)
                if "user" in options:
                    chown_tree(workdir, options["user"], options["group"])
            ports = assign_ports(runtime, kept)
            env = workload_env(options["env"], runtime, ports, allocation_id)
            options["env"] = env
            log_fd = open_log(self.log_path(allocation_id))
            try:
                process = subprocess.Popen(  # the argv of a verified bundle, no shell
                    expand_argv(runtime.command, env),
                    start_new_session=True,
                    stdin=subprocess.DEVNULL,
                    stdout=log_fd,
                    stderr=log_fd,
                    **options,
                )
            finally:
                os.close(log_fd)
        except BaseException:
            self._destroy(set(made))
            if not restarted:  # nothing of a start that did not happen stays behind
                if self.accounts is not None:
                    self.accounts.release(allocation_id)
                shutil.rmtree(self.workdirs / allocation_id, ignore_errors=True)
            raise
        w = Workload(allocation_id, process.pid, devices, process, slices=tuple(made))
        w.app, w.ports = True, ports
        w.prober = self._prober(runtime, ports, restarted)
        return w

    def _prober(self, runtime: WorkloadRuntime, ports: dict[str, int], restarted: bool) -> Prober:
        probe = runtime.probe
        host = ports.get(str(probe.port)) if probe is not None else None
        prober = Prober(probe, host, restarted)
        prober.start()
        return prober

    def process_options(self, allocation_id: str, devices: str) -> dict[str, Any]:
        """Popen options for a process of the allocation (its workload, a shell): its user,
        working directory and environment."""
        if self.accounts is None:
            return {"env": workload_environment(allocation_id, devices)}
        account = self.accounts.lease(allocation_id)
        return {
            "env": workload_environment(allocation_id, devices, account.home, account.uid),
            "cwd": account.home,
            "user": account.uid,
            "group": account.gid,
            "extra_groups": [],
            "umask": 0o077,
        }

    def _release(self, workload: Workload) -> None:
        workload.stop()
        if self.accounts is not None:
            self.accounts.release(workload.allocation_id)
        self._destroy(set(workload.slices))
        if workload.app:
            log_file = self.log_path(workload.allocation_id)
            for path in (log_file, log_file.with_name(log_file.name + ".1")):
                path.unlink(missing_ok=True)
            shutil.rmtree(self.workdirs / workload.allocation_id, ignore_errors=True)

    def _destroy(self, slices: set[Slice]) -> None:
        for s in slices:
            try:
                self.mig.destroy(s)
                self.undestroyed.discard(s)
            except MigError as exc:
                log.error("MIG instance not destroyed", extra={"fields": {"error": str(exc)}})
                self.undestroyed.add(s)

    def _sweep_orphans(self) -> None:
        self._swept = True
        owned = {s for w in self.workloads.values() for s in w.slices}
        try:
            orphans = {i.slice for i in self.mig.existing()} - owned
        except MigError as exc:
            log.error("MIG instances not listed", extra={"fields": {"error": str(exc)}})
            return
        if orphans:
            log.warning("destroying orphan MIG instances", extra={"fields": {"n": len(orphans)}})
            self._destroy(orphans)

    def stop_all(self) -> None:
        """On agent shutdown the workloads keep running (a restart adopts them)."""
        self._save()
