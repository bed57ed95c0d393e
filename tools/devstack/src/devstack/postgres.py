"""PostgreSQL from the Debian packages: one cluster under <state>/pg, one database and two login
roles per service that declares `database = true` in deploy/fleet.toml:

- `<package>`, the owner: owns the database and every object the migrations create; the service
  migrates with it (GPUCLOUD_DATABASE_OWNER_URL) before it serves;
- `<package>_runtime`, the runtime role the service serves with (GPUCLOUD_DATABASE_URL): no
  privilege of its own; the migrations grant it the DML it needs (platformkit.migrate).

Access rules (pg_hba.conf): the admin role gpucloud_admin from 127.0.0.1 and the unix socket; an
owner only to the database named like itself (`sameuser`), a runtime role only to its service's
database; CONNECT on each database is revoked from PUBLIC and granted to its two roles only.
When run as root the cluster runs as the unprivileged `postgres` system user (initdb refuses root).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import subprocess
import time
from functools import cache
from pathlib import Path

from devstack import credentials, supervise
from devstack.credentials import ADMIN_ROLE
from devstack.fleet import Fleet
from devstack.paths import state_dir

NAME = "postgres"
INSTALL = "sudo apt-get update && sudo apt-get install -y postgresql"
SYSTEM_USER = "postgres"
FALLBACK_ROOT = Path("/var/lib/gpucloud-devstack")
_IDENT = re.compile(r"[a-z0-9_]+")


class PostgresError(RuntimeError):
    pass


def bin_dir() -> Path:
    """The bin folder of the highest installed PostgreSQL (/usr/lib/postgresql/<v>/bin)."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    if not found:
        initdb = shutil.which("initdb")
        if initdb:
            return Path(initdb).resolve().parent
        raise PostgresError(f"PostgreSQL not found; install it with: {INSTALL}")

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.name)) or (0,)

    return max(found, key=version)


def _home() -> Path:
    """<state>/pg, or, when the postgres system user cannot reach the state folder (a checkout
    under /root, say), /var/lib/gpucloud-devstack/<hash of the state folder>/pg."""
    return _home_for(state_dir())


@cache
def _home_for(state: Path) -> Path:
    """Decided once per state folder and kept in <state>/postgres-home: the folder's mode may
    change later (the node agent opens it to its workload users), and a second home would
    leave the first cluster running, unseen by `down`, holding the port."""
    if os.geteuid() != 0:
        return state / "pg"
    _ensure_system_user()
    marker = state / "postgres-home"
    if marker.is_file():
        return Path(marker.read_text().strip())
    probe = subprocess.run(_as_db_user(["test", "-x", str(state)]), capture_output=True)
    if probe.returncode == 0 or (state / "pg" / "data").is_dir():
        home = state / "pg"
    else:
        outside = FALLBACK_ROOT / hashlib.sha256(str(state).encode()).hexdigest()[:12]
        home = outside / "pg"
        if home.exists():  # the cluster of an earlier state folder at this path: its
            _drop_stale(home)  # passwords are not this folder's secrets
        outside.mkdir(parents=True, exist_ok=True)
        FALLBACK_ROOT.chmod(0o755)
        outside.chmod(0o755)
        (outside / "state-folder").write_text(f"{state}\n")
    marker.write_text(f"{home}\n")
    return home


def _drop_stale(home: Path) -> None:
    try:
        pid = int((home / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pid = None
    if pid and supervise.alive(pid):
        raise PostgresError(
            f"{home} holds a running cluster of an earlier state folder at this path;"
            " stop it with: devstack down --everywhere"
        )
    shutil.rmtree(home)


def log_path() -> Path:
    """The server log. As root the server runs as the `postgres` user, which may not reach
    <state>/logs (a umask of 077 makes it 0700 root's): the log then lives in the cluster's
    own folder, which that user owns, and <state>/logs/postgres.log links to it."""
    log = supervise.log_file(NAME)
    if os.geteuid() != 0:
        return log
    inside = _home() / "postgres.log"
    if not log.is_symlink() or log.readlink() != inside:
        log.unlink(missing_ok=True)
        log.symlink_to(inside)
    return inside


def data_dir() -> Path:
    return _home() / "data"


def socket_dir() -> Path:
    return _home() / "run"


def _as_db_user(cmd: list[str]) -> list[str]:
    """Run cmd as the postgres system user when we are root."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", SYSTEM_USER, "--", *cmd]


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SYSTEM_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


@cache
def _ensure_system_user() -> None:
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/bin/false", SYSTEM_USER],
            check=True,
        )


def _prepare_dirs() -> None:
    for path in (_home(), socket_dir()):
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)
        _chown(path)
    log = log_path()
    log.touch(exist_ok=True)
    _chown(log)
    probe = subprocess.run(_as_db_user(["test", "-w", str(_home())]), capture_output=True)
    if probe.returncode != 0:
        raise PostgresError(f"user {SYSTEM_USER} cannot write to {_home()}")


def _initdb() -> bool:
    """Create the cluster once; True if it was created now."""
    if (data_dir() / "PG_VERSION").is_file():
        return False
    if data_dir().exists():
        shutil.rmtree(data_dir())  # half-made by an interrupted initdb
    pwfile = _home() / "admin.pw"
    pwfile.write_text(credentials.password(ADMIN_ROLE) + "\n")
    pwfile.chmod(0o600)
    _chown(pwfile)
    try:
        cmd = [
            str(bin_dir() / "initdb"),
            "-D",
            str(data_dir()),
            "-U",
            ADMIN_ROLE,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]
        result = subprocess.run(_as_db_user(cmd), capture_output=True, text=True)
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise PostgresError(f"initdb failed:\n{result.stdout}{result.stderr}")
    with (data_dir() / "postgresql.conf").open("a") as f:
        f.write("\ninclude_if_exists = 'devstack.conf'\n")
    (_home() / "provisioned.stamp").unlink(missing_ok=True)
    return True


def _write_config(fleet: Fleet) -> None:
    conf = data_dir() / "devstack.conf"
    conf.write_text(
        "# written by devstack on every start\n"
        f"port = {fleet.postgres_port}\n"
        "listen_addresses = '127.0.0.1'\n"
        f"unix_socket_directories = '{socket_dir()}'\n"
        "max_connections = 300\n"
        "shared_buffers = 128MB\n"
        "password_encryption = 'scram-sha-256'\n"
        "log_min_messages = warning\n"
        "log_connections = off\n"
        # A client that stalls mid-handshake (an asyncio connect whose event loop is paused,
        # as between two tests) holds its backend in authentication, where it cannot take
        # the barrier DROP DATABASE waits for: the default 60 s stalled every such DROP.
        "authentication_timeout = 5s\n"
    )
    _chown(conf)
    hba = data_dir() / "pg_hba.conf"
    runtime_lines = "".join(
        f"host    {name}  {runtime_role(name)}  127.0.0.1/32   scram-sha-256\n"
        for name in fleet.database_packages
    )
    hba.write_text(
        "# written by devstack: admin from loopback and the socket; each service's owner role\n"
        "# only to the database named like itself, its runtime role only to that database\n"
        "# TYPE  DATABASE  USER            ADDRESS        METHOD\n"
        f"local   all       {ADMIN_ROLE}                  scram-sha-256\n"
        f"host    all       {ADMIN_ROLE}  127.0.0.1/32   scram-sha-256\n"
        "host    sameuser  all             127.0.0.1/32   scram-sha-256\n"
        f"{runtime_lines}"
    )
    _chown(hba)


def running_pid() -> int | None:
    try:
        pid = int((data_dir() / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if supervise.alive(pid) else None


def ready(fleet: Fleet) -> bool:
    try:
        result = subprocess.run(
            [
                str(bin_dir() / "pg_isready"),
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                str(fleet.postgres_port),
            ],
            capture_output=True,
            timeout=5,
        )
    except (PostgresError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def start(fleet: Fleet) -> None:
    """initdb once, (re)write the config, start the server unless it runs, provision roles."""
    _prepare_dirs()
    _initdb()
    _write_config(fleet)
    if running_pid():
        _pg_ctl("reload")
    elif ready(fleet):
        raise PostgresError(
            f"port {fleet.postgres_port} is held by a PostgreSQL that is not this state folder's "
            "(another checkout's devstack?); stop it with: devstack down --everywhere"
        )
    else:
        _pg_ctl("start", "-w", "-t", "60", "-l", str(log_path()))
    provision(fleet)


def _pg_ctl(action: str, *args: str) -> None:
    cmd = [str(bin_dir() / "pg_ctl"), action, "-D", str(data_dir()), *args]
    result = subprocess.run(
        _as_db_user(cmd),
        capture_output=True,
        text=True,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise PostgresError(
            f"pg_ctl {action} failed:\n{result.stdout}{result.stderr}\n"
            f"last lines of {log_path()}:\n{supervise.tail(log_path())}"
        )


def psql(fleet: Fleet, sql: str, database: str = "postgres") -> str:
    """Run SQL as the admin over TCP; returns stdout."""
    env = {**os.environ, "PGPASSWORD": credentials.password(ADMIN_ROLE)}
    cmd = [
        str(bin_dir() / "psql"),
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-At",
        "-h",
        "127.0.0.1",
        "-p",
        str(fleet.postgres_port),
        "-U",
        ADMIN_ROLE,
        "-d",
        database,
    ]
    result = subprocess.run(cmd, input=sql, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise PostgresError(f"psql failed:\n{result.stderr}")
    return result.stdout


def runtime_role(package: str) -> str:
    """The runtime login of a service's database (the owner is named like the database)."""
    return f"{package}_runtime"


def _login_role_sql(role: str) -> str:
    pw = credentials.password(role)
    if not _IDENT.fullmatch(role) or not _IDENT.fullmatch(pw.lower().replace("-", "_")):
        raise PostgresError(f"unsafe role or password for {role!r} (fleet.toml/secrets.json)")
    # identifiers checked above; passwords are generated url-safe tokens
    return (
        f"SELECT format('CREATE ROLE %I LOGIN', '{role}') "  # noqa: S608
        f"WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') \\gexec\n"
        f'ALTER ROLE "{role}" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT '
        f"PASSWORD '{pw}';\n"
    )


def _provision_sql(fleet: Fleet) -> str:
    parts = []
    for name in fleet.database_packages:
        runtime = runtime_role(name)
        parts.append(_login_role_sql(name) + _login_role_sql(runtime))
        # identifiers checked by _login_role_sql
        parts.append(
            f"SELECT format('CREATE DATABASE %I OWNER %I', '{name}', '{name}') "  # noqa: S608
            f"WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{name}') \\gexec\n"
            f'ALTER DATABASE "{name}" OWNER TO "{name}";\n'
            f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC;\n'
            f'GRANT ALL ON DATABASE "{name}" TO "{name}";\n'
            f'GRANT CONNECT ON DATABASE "{name}" TO "{runtime}";\n'
        )
    return "".join(parts)


def provision(fleet: Fleet) -> None:
    """One login role and database per service; skipped when nothing changed since last time."""
    sql = _provision_sql(fleet)
    digest = hashlib.sha256(sql.encode()).hexdigest()
    stamp = _home() / "provisioned.stamp"
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return
    psql(fleet, sql)
    stamp.write_text(digest + "\n")


def wait_ready(fleet: Fleet, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready(fleet):
            return
        time.sleep(0.2)
    raise PostgresError(f"PostgreSQL did not answer on port {fleet.postgres_port}")


def stop(mode: str = "fast") -> int | None:
    """pg_ctl stop (fast: roll back and disconnect; immediate: crash-like, for chaos tests)."""
    pid = running_pid()
    if pid:
        try:
            _pg_ctl("stop", "-m", mode, "-w", "-t", "30")
        except PostgresError:
            if supervise.alive(pid):
                os.kill(pid, 9)
    return pid
