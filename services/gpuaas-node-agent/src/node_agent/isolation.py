"""Workloads and shells cannot reach the agent's secrets: each allocation runs as an
unprivileged user of its own, in a private working directory, with the device
environment only.

- **A uid per allocation, leased machine-wide.** The agent picks a free uid in
  [GPUCLOUD_WORKLOAD_FIRST_UID, + GPUCLOUD_WORKLOAD_UID_COUNT) (default 3,000,000 and
  1,000,000) and claims it with a lease file created with O_EXCL in
  GPUCLOUD_WORKLOAD_LEASE_DIR (default /run/gpucloud-workload-uids, root only), so two
  agents on one machine (the devstack runs two) can never hand out the same uid. No
  /etc/passwd entry is made (like systemd's DynamicUser): nothing to clean up after a
  crash, no lock contention on the shared account files; a uid that has a passwd entry or
  a running process is skipped. The group is the uid's own number; no supplementary groups.
- **A private working directory**, `<workspace root>/<allocation id>`, mode 0700 and owned
  by that uid; the root is 0711 (traversable, not listable), so one allocation can neither
  list nor open another's files.
- **The agent keeps its files to itself**: it runs with umask 077 (its state file and any
  credential it writes are 0600) and its state directory is 0711; its environment is in
  /proc/<pid>/environ, which only its own uid (root) can read.
- **Release** kills every process still running as the uid, removes the working directory
  and then the lease: a uid is handed out again only once nothing of the previous
  allocation is left. On start the agent reclaims its own leases of allocations it no
  longer runs (a crash between start and save).

Without root (no CAP_SETUID) the agent cannot switch users: GPUCLOUD_WORKLOAD_ISOLATION=
`auto` (default) then runs workloads as itself and says so in the log, `required` refuses
to start, `off` never isolates (tests that run no workload).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import pwd
import random
import shutil
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_LEASE_DIR = Path("/run/gpucloud-workload-uids")
DEFAULT_FIRST_UID = 3_000_000
DEFAULT_UID_COUNT = 1_000_000
# What a workload inherits from the agent's environment (everything else is dropped: the
# agent's GPUCLOUD_* settings hold its bootstrap and operator tokens).
INHERITED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH", "CUDA_HOME")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class IsolationUnavailable(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Account:
    """Who an allocation's processes run as, and where."""

    uid: int
    gid: int
    home: Path

    @property
    def name(self) -> str:
        return f"alloc-{self.uid}"


def workload_environment(
    allocation_id: str, devices: str, home: Path | None = None, uid: int | None = None
) -> dict[str, str]:
    """The environment of a workload or a shell in its allocation: a short list of the
    agent's variables (PATH, locale, library path), the allocation's devices and identity."""
    env = {k: os.environ[k] for k in INHERITED if k in os.environ}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(
        {
            "CUDA_VISIBLE_DEVICES": devices,
            "NVIDIA_VISIBLE_DEVICES": devices,
            "GPUCLOUD_ALLOCATION_ID": allocation_id,
        }
    )
    if home is not None:
        env["HOME"] = str(home)
    if uid is not None:
        env["USER"] = env["LOGNAME"] = f"alloc-{uid}"
    return env


def harden_agent(state_dir: Path) -> None:
    """The agent's own files become private: umask 077 for everything it writes from now
    on, its state directory 0711 (workspaces below it stay reachable by their owners)."""
    os.umask(0o077)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o711)
    for entry in state_dir.iterdir():
        if entry.is_file():
            entry.chmod(0o600)


def processes_of(uid: int, proc: Path = Path("/proc")) -> list[int]:
    """Pids of live (not zombie) processes whose real or effective uid is `uid`."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("State", "").strip().startswith("Z"):
            continue
        if str(uid) in fields.get("Uid", "").split()[:2]:
            found.append(int(entry.name))
    return found


def kill_all(uid: int, attempts: int = 20) -> None:
    """SIGKILL every process of `uid`, again until none is left (they may fork)."""
    for _ in range(attempts):
        pids = processes_of(uid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    log.error("processes of a released allocation survived", extra={"fields": {"uid": uid}})


class WorkloadAccounts:
    """Leases one uid and one private working directory per allocation."""

    def __init__(
        self,
        *,
        owner: str,
        workspace_root: Path,
        lease_dir: Path = DEFAULT_LEASE_DIR,
        first_uid: int = DEFAULT_FIRST_UID,
        uid_count: int = DEFAULT_UID_COUNT,
    ) -> None:
        if os.geteuid() != 0:
            raise IsolationUnavailable("switching to per-allocation users needs root")
        self.owner = owner
        self.workspace_root = workspace_root
        self.lease_dir = lease_dir
        self.first_uid, self.uid_count = first_uid, uid_count
        lease_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        lease_dir.chmod(0o700)
        workspace_root.mkdir(parents=True, exist_ok=True)
        for directory in (workspace_root, *workspace_root.parents):
            if directory == Path(directory.anchor):
                break
            # Every directory above a workspace must be traversable by its owner (not
            # listable: 0711 is enough); only ours are changed.
            if directory.stat().st_uid == os.geteuid() and not directory.stat().st_mode & 0o001:
                directory.chmod(directory.stat().st_mode | 0o111)
        workspace_root.chmod(0o711)
        self._leases: dict[str, int] = {}
        self._load()

    def _load(self) -> None:
        for entry in self.lease_dir.iterdir():
            lease = self._read(entry)
            if lease is not None and lease.get("owner") == self.owner:
                self._leases[str(lease["allocation_id"])] = int(entry.name)

    @staticmethod
    def _read(entry: Path) -> dict[str, object] | None:
        if not entry.name.isdigit():
            return None
        try:
            lease = json.loads(entry.read_text())
        except (OSError, ValueError):
            return None
        return lease if isinstance(lease, dict) else None

    def account(self, allocation_id: str) -> Account | None:
        uid = self._leases.get(allocation_id)
        if uid is None:
            return None
        return Account(uid, uid, self.workspace_root / allocation_id)

    def lease(self, allocation_id: str) -> Account:
        """The allocation's account, leasing a uid and making its directory on first use."""
        account = self.account(allocation_id)
        if account is None:
            uid = self._claim(allocation_id)
            self._leases[allocation_id] = uid
            account = Account(uid, uid, self.workspace_root / allocation_id)
        home = account.home
        home.mkdir(mode=0o700, exist_ok=True)
        os.chown(home, account.uid, account.gid)
        home.chmod(0o700)
        return account

    def _claim(self, allocation_id: str) -> int:
        body = json.dumps({"owner": self.owner, "allocation_id": allocation_id}).encode()
        rng = random.SystemRandom()
        for _ in range(64):
            uid = self.first_uid + rng.randrange(self.uid_count)
            if _has_passwd_entry(uid) or processes_of(uid):
                continue
            try:
                fd = os.open(self.lease_dir / str(uid), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            return uid
        raise IsolationUnavailable("no free workload uid found")

    def release(self, allocation_id: str) -> None:
        """Kill what still runs as the allocation's uid, remove its directory, then the
        lease (in that order: a uid is reused only once nothing of it is left)."""
        account = self.account(allocation_id)
        if account is None:
            return
        kill_all(account.uid)
        shutil.rmtree(account.home, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.lease_dir / str(account.uid)).unlink()
        self._leases.pop(allocation_id, None)

    def reclaim(self, keep: set[str]) -> None:
        """Release this agent's leases of allocations it no longer runs or wants."""
        for allocation_id in sorted(set(self._leases) - keep):
            log.warning(
                "reclaiming a stale workload lease",
                extra={"fields": {"allocation_id": allocation_id}},
            )
            self.release(allocation_id)


def _has_passwd_entry(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def accounts_from_env(node_name: str, state_dir: Path) -> WorkloadAccounts | None:
    """The agent's accounts, or None when isolation is off or (in `auto`) unavailable."""
    env = os.environ.get
    mode = (env("GPUCLOUD_WORKLOAD_ISOLATION") or "auto").lower()
    if mode not in ("auto", "required", "off"):
        raise ValueError("GPUCLOUD_WORKLOAD_ISOLATION must be auto, required or off")
    if mode == "off":
        return None
    root = env("GPUCLOUD_WORKSPACE_ROOT")
    try:
        return WorkloadAccounts(
            owner=f"{node_name}@{state_dir.resolve()}",
            workspace_root=Path(root) if root else state_dir / "workspaces" / node_name,
            lease_dir=Path(env("GPUCLOUD_WORKLOAD_LEASE_DIR") or DEFAULT_LEASE_DIR),
            first_uid=int(env("GPUCLOUD_WORKLOAD_FIRST_UID") or DEFAULT_FIRST_UID),
            uid_count=int(env("GPUCLOUD_WORKLOAD_UID_COUNT") or DEFAULT_UID_COUNT),
        )
    except IsolationUnavailable:
        if mode == "required":
            raise
        log.warning(
            "workload isolation unavailable (not root): workloads and shells run as the agent"
        )
        return None
