"""App workloads: how the agent runs a verified bundle with its runtime (an app replica).

- **Unpacking** (`unpack_layers`): the layers of the verified OCI layout
  (GPUCLOUD_NODE_BUNDLE_DIR/<hex>/) are extracted in order into the workload's private
  working directory. Only what cannot reach outside it: a member name that is absolute,
  holds `..`, or resolves (through a link unpacked before it) outside the directory is
  refused, and so is a symlink whose target is absolute or leaves the directory; hard links,
  devices, FIFOs and anything not a regular file, directory or such a symlink are refused.
  A refusal is a `BundleError("layer-unsafe")`: nothing starts, the agent reports the
  allocation failed (gpuaas records `bundle_layer_unsafe`).
- **Ports** (`assign_ports`): a free host port (bound on 127.0.0.1 to find it) per declared
  port; `PORT` is the first one's, `PORT_<NAME>` each one's (name upper-cased, `-` -> `_`),
  and `${PORT}` / `${PORT_<NAME>}` in the argv expand to them (`expand_argv`; anything
  else stays as written). The argv runs without a shell.
- **Logs**: stdout and stderr go to one file per allocation (O_APPEND, agent-owned); it is
  bounded by `trim_log`: past `LOG_LIMIT` bytes its content moves to `<log>.1` and the file
  starts again (lines written during that copy may be lost).
- **Readiness** (`Prober`): HTTP GET http://127.0.0.1:<host port><path> with the probe's
  headers, every `interval_s` after `initial_delay_s`, each within `timeout_s`; a 2xx or
  3xx answer passes. `starting` until the first pass, then `ready`; `failure_threshold`
  failures in a row make a ready workload `unready` (`probe_failed`). A process that exits
  is restarted by the reconciler and reported `unready` (`process_exited`) until its probe
  passes again. A runtime without a probe is ready while its process runs.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import posixpath
import re
import shutil
import socket
import stat
import tarfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from gpucloud_contracts.node_sync import WorkloadProbe, WorkloadRuntime
from gpucloud_trust.bundle import LAYER_MEDIA_TYPE, BundleError, blob_path, load_layout

UNSAFE = "layer-unsafe"
LOG_LIMIT = 1024 * 1024  # bytes per log file (the current one and one older)
STARTING, READY, UNREADY = "starting", "ready", "unready"
PROBE_FAILED, PROCESS_EXITED = "probe_failed", "process_exited"
_PORT_REF = re.compile(r"\$\{(PORT(?:_[A-Z0-9_]+)?)\}")


# ----------------------------------------------------------------------------- unpacking


def _inside(root: Path, path: Path) -> bool:
    return path == root or root in path.parents


def _member_path(root: Path, name: str) -> Path:
    """Where a member lands, or BundleError when its name could leave `root`."""
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        raise BundleError(UNSAFE, f"member {name!r}: not a relative POSIX path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise BundleError(UNSAFE, f"member {name!r}: empty or climbs with '..'")
    target = root.joinpath(*parts)
    # Whatever was unpacked before (a symlinked directory) must not lead outside.
    if not _inside(root, Path(os.path.realpath(target.parent))):
        raise BundleError(UNSAFE, f"member {name!r}: its directory resolves outside")
    return target


def _check_symlink(root: Path, name: str, linkname: str) -> None:
    if not linkname or linkname.startswith("/"):
        raise BundleError(UNSAFE, f"symlink {name!r} -> {linkname!r}: absolute or empty")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), linkname))
    if resolved == ".." or resolved.startswith("../") or resolved.startswith("/"):
        raise BundleError(UNSAFE, f"symlink {name!r} -> {linkname!r}: leaves the directory")


def unpack_layers(layout: Path, root: Path) -> int:
    """Extract the layout's layer tars into `root` (created if needed); the bytes extracted.
    Call it only on a layout verify_before_run accepted (every blob hashes to its
    descriptor)."""
    manifest = load_layout(layout)
    root.mkdir(parents=True, exist_ok=True)
    root = Path(os.path.realpath(root))
    total = 0
    for layer in manifest.layers:
        if layer.media_type != LAYER_MEDIA_TYPE:
            raise BundleError(UNSAFE, f"layer {layer.digest}: media type {layer.media_type}")
        with (
            blob_path(layout, layer.digest).open("rb") as raw,
            tarfile.open(fileobj=raw, mode="r|") as tar,
        ):
            for member in tar:
                total += _extract(tar, member, root)
    return total


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path) -> int:
    target = _member_path(root, member.name)
    if member.isdir():
        if target.is_symlink():
            raise BundleError(UNSAFE, f"directory {member.name!r} replaces a symlink")
        target.mkdir(parents=True, exist_ok=True)
        target.chmod(0o755)
        return 0
    if member.issym():
        _check_symlink(root, member.name, member.linkname)
        _clear(target)
        target.symlink_to(member.linkname)
        # Lexically inside is not enough (a link through a link to "." climbs higher).
        if not _inside(root, Path(os.path.realpath(target))):
            target.unlink()
            raise BundleError(UNSAFE, f"symlink {member.name!r} resolves outside")
        return 0
    if not member.isreg():
        raise BundleError(UNSAFE, f"member {member.name!r}: not a file, directory or symlink")
    source = tar.extractfile(member)
    assert source is not None
    _clear(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o755 if member.mode & stat.S_IXUSR else 0o644
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    os.fchmod(fd, mode)  # exactly the layer's mode, whatever the agent's umask (077)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out)
    return member.size


def _clear(target: Path) -> None:
    """A later layer replaces what an earlier one put there (never through a link)."""
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """Hand the unpacked tree to the workload's user (links themselves, never followed)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
    os.chown(root, uid, gid)


# ----------------------------------------------------------------------------- ports and argv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assign_ports(runtime: WorkloadRuntime, kept: Mapping[str, int] | None = None) -> dict[str, int]:
    """Declared port (as text) -> host port: the ones kept from before (a restart), a free
    one for each other."""
    kept = kept or {}
    return {str(p.port): kept.get(str(p.port)) or free_port() for p in runtime.ports}


def port_env(runtime: WorkloadRuntime, ports: Mapping[str, int]) -> dict[str, str]:
    env: dict[str, str] = {}
    for i, p in enumerate(runtime.ports):
        host = str(ports[str(p.port)])
        if i == 0:
            env["PORT"] = host
        env["PORT_" + p.name.upper().replace("-", "_")] = host
    return env


def expand_argv(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """`${PORT}` and `${PORT_<NAME>}` replaced by the assigned host ports; an unknown
    reference (or any other `$`) stays as written: no shell ever sees the argv."""
    return [_PORT_REF.sub(lambda m: env.get(m.group(1), m.group(0)), arg) for arg in argv]


def workload_env(
    base: Mapping[str, str], runtime: WorkloadRuntime, ports: Mapping[str, int], allocation: str
) -> dict[str, str]:
    """The runtime's environment over the agent's device environment; the ports and the
    allocation id last, so a manifest cannot override them."""
    return {
        **base,
        **(runtime.env or {}),
        **port_env(runtime, ports),
        "GPUCLOUD_ALLOCATION_ID": allocation,
    }


# ----------------------------------------------------------------------------- logs


def open_log(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def trim_log(path: Path, limit: int = LOG_LIMIT) -> None:
    """Past `limit` bytes: the content moves to `<log>.1`, the file starts again (its
    writers hold it with O_APPEND, so they go on at its new end)."""
    try:
        if path.stat().st_size <= limit:
            return
        shutil.copyfile(path, path.with_name(path.name + ".1"))
        os.truncate(path, 0)
    except OSError:
        return


def read_log(path: Path, offset: int = 0) -> bytes:
    """The log from `offset` (older file first when reading from the start)."""
    out = b""
    older = path.with_name(path.name + ".1")
    if offset == 0 and older.exists():
        with contextlib.suppress(OSError):
            out += older.read_bytes()
    with contextlib.suppress(OSError), path.open("rb") as f:
        f.seek(offset)
        out += f.read()
    return out


# ----------------------------------------------------------------------------- readiness


def probe_once(probe: WorkloadProbe, host_port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", host_port, timeout=probe.timeout_s)
    try:
        conn.request("GET", probe.path, headers=dict(probe.headers or {}))
        return 200 <= conn.getresponse().status < 400
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class Prober:
    """The readiness of one workload process, probed on a thread of its own."""

    def __init__(self, probe: WorkloadProbe | None, host_port: int | None, restarted: bool):
        self.probe, self.host_port = probe, host_port
        # A restarted process is unready (process_exited) until its probe passes.
        self.readiness = UNREADY if restarted else STARTING
        self.reason: str | None = PROCESS_EXITED if restarted else None
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if probe is None or host_port is None:
            self.readiness, self.reason = READY, None  # nothing to probe: ready while it runs

    def start(self) -> None:
        if self.probe is None or self.host_port is None:
            return
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        probe, port = self.probe, self.host_port
        assert probe is not None and port is not None
        if self._stop.wait(probe.initial_delay_s):
            return
        while not self._stop.is_set():
            self.observe(probe_once(probe, port))
            self._stop.wait(probe.interval_s)

    def observe(self, passed: bool) -> None:
        """One probe's outcome."""
        assert self.probe is not None
        if passed:
            self.failures = 0
            self.readiness, self.reason = READY, None
            return
        self.failures += 1
        if self.readiness == READY and self.failures >= self.probe.failure_threshold:
            self.readiness, self.reason = UNREADY, PROBE_FAILED

    def stop(self) -> None:
        self._stop.set()
