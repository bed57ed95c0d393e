"""devstack processes that belong to another state folder (another checkout of the repo, or an
earlier GPUCLOUD_STATE_DIR). They hold the fleet's fixed ports, so CI and `devstack down
--everywhere` stop them before starting this checkout's stack.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from devstack import postgres, supervise
from devstack.paths import repo_root, state_dir


@dataclass(frozen=True)
class Stray:
    pid: int
    kind: str  # kafka, postgres, oci-registry or service
    name: str
    where: Path  # state folder (kafka), data folder (postgres), working directory (services)


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (a.decode(errors="replace").split("=", 1) for a in raw.split(b"\0") if b"=" in a)
    return dict(pairs)


def _classify(pid: int) -> Stray | None:
    argv = _cmdline(pid)
    if not argv:
        return None
    if "kafka.Kafka" in argv and argv[-1].endswith("/kafka/server.properties"):
        return Stray(pid, "kafka", "kafka", Path(argv[-1]).parent.parent)
    if len(argv) == 3 and argv[1] == "serve" and argv[2].endswith("/oci-registry/config.yml"):
        return Stray(pid, "oci-registry", "oci-registry", Path(argv[2]).parent.parent)
    if Path(argv[0]).name == "postgres" and "-D" in argv:
        data = Path(argv[argv.index("-D") + 1])
        if data.name == "data" and data.parent.name == "pg":
            return Stray(pid, "postgres", "postgres", data)
    if len(argv) >= 3 and argv[1] == "-m":
        environ = _environ(pid)
        name = environ.get("GPUCLOUD_SERVICE_NAME")
        if name:
            try:
                cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
            except OSError:
                return None
            # An isolated stack (GPUCLOUD_DEVSTACK_HOME, e.g. a chaos run) runs from the same
            # checkout: its state folder, not its working directory, tells it apart.
            home = environ.get("GPUCLOUD_DEVSTACK_HOME") or environ.get("GPUCLOUD_STATE_DIR")
            return Stray(pid, "service", name, Path(home) if home else cwd)
    return None


def find() -> list[Stray]:
    """devstack processes on this machine that are not this checkout's."""
    ours_state, ours_repo = state_dir().resolve(), repo_root().resolve()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        stray = _classify(int(entry.name))
        if stray is None:
            continue
        ours_service = ours_repo if ours_state == (ours_repo / ".state").resolve() else ours_state
        mine = {
            "service": ours_service,
            "kafka": ours_state,
            "oci-registry": ours_state,
            "postgres": postgres.data_dir(),
        }[stray.kind]
        if stray.where.resolve() != mine:
            found.append(stray)
    return found


def stop(strays: list[Stray], timeout: float = 30.0) -> None:
    """Services and Kafka: SIGTERM then SIGKILL; PostgreSQL: a fast shutdown (SIGINT)."""
    for s in strays:
        sig = signal.SIGINT if s.kind == "postgres" else signal.SIGTERM
        try:
            os.kill(s.pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(supervise.alive(s.pid) for s in strays):
        time.sleep(0.1)
    for s in strays:
        if supervise.alive(s.pid):
            try:
                os.kill(s.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
