"""The chaos run's own stack: devstack in an isolated home (GPUCLOUD_DEVSTACK_HOME, a temp
folder) with every port shifted (GPUCLOUD_DEVSTACK_PORT_OFFSET), so the shared dev fleet on
the fixed ports is never touched. Also the fault actions themselves.

`isolate()` must run before anything loads devstack's fleet (fleet.load() is cached).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

from chaos.schedule import CRASH_POINT, KAFKA_RESTART, KILL, POSTGRES_FAST, POSTGRES_KILL, Fault

DEFAULT_PORT_OFFSET = 1000
# The part of the fleet the launch journey touches (the others only cost CPU on a small box).
SERVICES = "iam,billing,gpuaas,audit,terminal-gateway"
METERING_PERIOD_S = "2"
MIN_RUNWAY_S = "3"


class ChaosStackError(RuntimeError):
    pass


def isolate(home: Path | None, port_offset: int) -> Path:
    """Point devstack (in this process and every child) at an isolated home and ports."""
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="gpucloud-chaos-"))
    home.mkdir(parents=True, exist_ok=True)
    # The PostgreSQL cluster runs as the `postgres` system user when we are root: it must be
    # able to traverse the home to keep its data inside it (and be removed with it).
    home.chmod(0o755)
    os.environ["GPUCLOUD_DEVSTACK_HOME"] = str(home)
    os.environ["GPUCLOUD_DEVSTACK_PORT_OFFSET"] = str(port_offset)
    os.environ["GPUCLOUD_DEVSTACK_SERVICES"] = SERVICES
    os.environ.pop("GPUCLOUD_STATE_DIR", None)
    # Usage intervals close every 2 s instead of every minute, so usage accrues during a run.
    os.environ["GPUCLOUD_METERING_PERIOD_S"] = METERING_PERIOD_S
    # gpuaas's minimum-runway gate (300 s by default) would refuse every launch the journey's
    # small top-ups pay for; a few seconds keep the gate in play and the rounds short.
    os.environ["GPUCLOUD_MIN_RUNWAY_S"] = MIN_RUNWAY_S
    os.environ.pop("GPUCLOUD_FAULTS", None)
    return home


def free_port_offset(start: int | None = None, step: int = 100, tries: int = 40) -> int:
    """The first offset (start, start + step, ...) at which no port of the fleet answers:
    two chaos runs on one machine (CI beside a developer's) do not collide. By default the
    search starts 1000 above the offset of the stack this process belongs to
    (GPUCLOUD_DEVSTACK_PORT_OFFSET), so a chaos run next to an offset stack skips its ports
    and those of the stacks below it."""
    import tomllib

    from devstack.fleet import port_offset
    from devstack.paths import fleet_file

    if start is None:
        start = port_offset() + DEFAULT_PORT_OFFSET

    data = tomllib.loads(fleet_file().read_text())
    base = [
        int(data["kafka"]["bootstrap"].rsplit(":", 1)[1]),
        int(data["kafka"]["controller"].rsplit(":", 1)[1]),
        int(data["postgres"]["port"]),
        int(data["gateway"]["port"]),
        *(int(s["port"]) for s in data.get("service", [])),
        *(int(s["ssh_port"]) for s in data.get("service", []) if s.get("ssh_port")),
        *range(
            int(data["node_agent"]["first_port"]),
            int(data["node_agent"]["first_port"]) + int(data["node_agent"].get("replicas", 1)),
        ),
    ]
    for offset in range(start, start + step * tries, step):
        if not any(_answers(port + offset) for port in base):
            return offset
    raise ChaosStackError("no free port offset found")


def _answers(port: int) -> bool:
    """Whether the port is taken: a listener answers, or a socket holds it (an outgoing
    connection's local port, say), so a server could not bind it (PostgreSQL binds with
    SO_REUSEADDR, as this probe does: a TIME_WAIT leftover does not count)."""
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            return True
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _share_kafka_jars(home: Path) -> None:
    """Reuse the default state folder's broker jars (saves a Maven round trip per run)."""
    from devstack.paths import repo_root

    source = repo_root() / ".state" / "kafka"
    target = home / "kafka"
    if not (source / "libs.stamp").is_file() or (target / "libs").exists():
        return
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source / "libs", target / "libs")
    shutil.copy2(source / "libs.stamp", target / "libs.stamp")


def _ports_free() -> None:
    from devstack import fleet

    f = fleet.load()
    ports = [int(f.kafka_bootstrap.rsplit(":", 1)[1]), int(f.kafka_controller.rsplit(":", 1)[1])]
    ports += [f.postgres_port, *(p.port for p in f.processes)]
    ports += [p.ssh_port for p in f.services if p.ssh_port]
    busy = [port for port in ports if _answers(port)]
    if busy:
        raise ChaosStackError(
            f"ports {busy} already answer: another chaos stack runs? --port-offset auto"
        )


def up(home: Path, log) -> object:
    """Start the isolated stack (Kafka, PostgreSQL, topics, every service, node agents)."""
    from devstack import stack

    _ports_free()
    _share_kafka_jars(home)
    infra, _ = stack.up(log=lambda m: log(f"devstack: {m}"))
    return infra


def down(home: Path, keep: bool, log) -> None:
    """Stop everything the isolated stack started; remove its home unless kept."""
    from devstack import stack

    try:
        stack.down()
    except Exception as exc:  # teardown goes on: the home's processes are swept below
        log(f"devstack down: {type(exc).__name__}: {exc}")
    _sweep(home)
    if not keep:
        shutil.rmtree(home, ignore_errors=True)


def _sweep(home: Path) -> None:
    """SIGKILL what is left of this home: workloads the node agents started in their own
    sessions (they outlive an agent by design), recognised by the home in their environment."""
    marker = f"GPUCLOUD_DEVSTACK_HOME={home}".encode()
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _start(name: str, infra, faults: str | None = None) -> int:
    from devstack import fleet, processes, supervise
    from devstack.paths import repo_root, venv_python

    f = fleet.load()
    proc = f.find(name)
    env = processes.environment(proc, f, infra)
    env.pop("GPUCLOUD_FAULTS", None)
    if faults:
        env["GPUCLOUD_FAULTS"] = faults
    return supervise.spawn(
        proc.name, [str(venv_python()), "-m", proc.package], env=env, cwd=repo_root()
    )


async def _wait_ready(name: str, within: float) -> bool:
    import httpx

    from devstack import fleet, processes

    proc = fleet.load().find(name)
    async with httpx.AsyncClient() as client:
        return (await processes.wait_ready(client, proc, within=within)).ok


async def wait_ready(name: str, within: float) -> bool:
    """Whether `name` answers /readyz within `within` seconds (the fault windows of run.py)."""
    return await _wait_ready(name, within)


def restart_clean(name: str, infra, wait: bool, within: float = 90.0) -> None:
    """Start `name` again (killing what is left of it first), as its supervisor would; with
    `wait`, until it is ready. Without, the next fault may find it still starting (a crash
    during start-up is a fault like any other)."""
    from devstack import supervise

    supervise.kill(name)
    _start(name, infra)
    if wait and not asyncio.run(_wait_ready(name, within)):
        raise ChaosStackError(f"{name} did not come back after a fault")


def revive(infra) -> list[str]:
    """What a supervisor (systemd, a Kubernetes restart policy) does: start every process of
    the fleet that is not running (one that died on its own, e.g. a start-up that met
    PostgreSQL down). Returns the names started."""
    from devstack import fleet, supervise

    started = []
    for proc in fleet.load().processes:
        if not supervise.running_pid(proc.name):
            _start(proc.name, infra)
            started.append(proc.name)
    return started


def ensure_all_ready(infra, within: float = 120.0) -> None:
    """After the last fault: every process of the fleet runs and answers /readyz (one that is
    not running is started)."""
    from devstack import fleet

    names = [p.name for p in fleet.load().processes]
    revive(infra)

    async def wait_all() -> list[bool]:
        return await asyncio.gather(*(_wait_ready(n, within) for n in names))

    down = [n for n, ok in zip(names, asyncio.run(wait_all()), strict=True) if not ok]
    if down:
        raise ChaosStackError(f"not ready after the faults: {down}")


def _restart_postgres(within: float = 60.0) -> None:
    """Start PostgreSQL again; after a kill -9 of the postmaster its orphaned backends can
    hold the shared memory for a moment, so the start is retried."""
    from devstack import fleet, postgres

    f = fleet.load()
    deadline = time.monotonic() + within
    while True:
        try:
            postgres.start(f)
            postgres.wait_ready(f, timeout=30)
            return
        except postgres.PostgresError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def inject(fault: Fault, infra, wait: bool = False) -> str:
    """Apply one fault and start what it stopped again; a line saying what happened. With
    `wait`, processes are waited for until ready (slower; one fault at a time)."""
    from devstack import infra as infra_mod
    from devstack import kafka, postgres, supervise

    started = time.monotonic()
    if fault.kind == KILL:
        pid = supervise.kill(fault.target)
        restart_clean(fault.target, infra, wait)
        what = f"killed pid {pid}"
    elif fault.kind == CRASH_POINT:
        supervise.kill(fault.target)
        pid = _start(fault.target, infra, faults=fault.point)
        # It dies when it first reaches the point (the load keeps it busy); bounded wait.
        deadline = time.monotonic() + 20
        while supervise.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        crashed = not supervise.alive(pid)
        restart_clean(fault.target, infra, wait)
        what = "crashed at the point" if crashed else "point not reached in 20 s"
    elif fault.kind == KAFKA_RESTART:
        kafka.stop()
        infra_mod.ensure_infra()
        what = "broker restarted"
    elif fault.kind == POSTGRES_FAST:
        postgres.stop(mode="fast")
        _restart_postgres()
        what = "fast shutdown, restarted"
    elif fault.kind == POSTGRES_KILL:
        pid = postgres.running_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while supervise.alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        _restart_postgres()
        what = f"postmaster {pid} killed, restarted"
    else:
        raise ValueError(f"unknown fault kind {fault.kind!r}")
    return f"{what} ({time.monotonic() - started:.1f} s)"
