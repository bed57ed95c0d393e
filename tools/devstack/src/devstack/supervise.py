"""Detached processes tracked by pid files: spawn, liveness, stop.

Every process devstack starts runs in its own session (so it outlives the CLI and a Ctrl-C in the
terminal does not reach it) and has a pid file <state>/pids/<name>.pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from devstack.paths import logs_dir, pids_dir


def pid_file(name: str) -> Path:
    return pids_dir() / f"{name}.pid"


def log_file(name: str) -> Path:
    return logs_dir() / f"{name}.log"


def alive(pid: int | None) -> bool:
    """True if pid runs and is not a zombie."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_pid(name: str) -> int | None:
    try:
        return int(pid_file(name).read_text().strip())
    except (OSError, ValueError):
        return None


def running_pid(name: str) -> int | None:
    """The pid of a live process started as name, else None."""
    pid = read_pid(name)
    return pid if alive(pid) else None


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start argv detached, stdout and stderr appended to <state>/logs/<name>.log; returns pid."""
    log = log_file(name)
    with log.open("ab") as out:
        out.write(f"\n==== devstack: starting {name}: {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    pid_file(name).write_text(f"{proc.pid}\n")
    return proc.pid


def _reap(pid: int) -> None:
    """Collect pid if it is our child (so it does not linger as a zombie)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group pid leads (spawned with start_new_session), else pid alone."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def kill(name: str) -> int | None:
    """SIGKILL name's process group at once (chaos testing). Returns the pid killed."""
    pid = running_pid(name)
    if pid:
        _signal_group(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
    return pid


def stop_many(names: Sequence[str], timeout: float = 15.0) -> dict[str, int]:
    """SIGTERM every named process, wait up to timeout, SIGKILL stragglers. Returns name -> pid."""
    pids = {n: p for n in names if (p := running_pid(n))}
    for pid in pids.values():
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in pids.values():
            _reap(pid)
        if not any(alive(p) for p in pids.values()):
            break
        time.sleep(0.1)
    for pid in pids.values():
        if alive(pid):
            _signal_group(pid, signal.SIGKILL)
            _reap(pid)
    for name in pids:
        pid_file(name).unlink(missing_ok=True)
    return pids


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a file ('' if it does not exist)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            data = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
