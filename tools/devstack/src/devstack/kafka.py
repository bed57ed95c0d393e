"""Apache Kafka 4.x, single node in KRaft mode (broker and controller in one JVM).

The jars come from Maven Central through tools/kafka/pom.xml (`mvn dependency:copy-dependencies`,
cached under <state>/kafka/libs and fetched again only when the pom changes). Storage is formatted
once; the broker runs detached with its log in <state>/logs/kafka.log.

Security (docs/operations.md, "Kafka principals"): the one client listener speaks SASL_PLAINTEXT
with SCRAM-SHA-512, and the KRaft StandardAuthorizer allows nothing an ACL does not grant. Every
service of deploy/fleet.toml is a principal of its own (username = the service's name) and so is
`admin`, a super user (topic provisioning, ACLs, DLQ replay, tests and benchmarks). Their SCRAM
credentials are written into the storage at format time (`kafka-storage format --add-scram`),
with passwords generated once into <state>/secrets.json (`kafka:<principal>`); the ACLs come from
`python -m platformkit.provision` (devstack runs it once storage is formatted, and on every
`up`). The controller listener uses SASL/PLAIN with a static credential of its own (SCRAM is not
available to KRaft controllers). A changed set of principals or passwords, or a storage formatted
before SASL, is formatted afresh: the dev stack's topics are recreated empty.

GPUCLOUD_DEVSTACK_KAFKA_SECURITY=plaintext runs the old PLAINTEXT broker without authorizer
instead (an isolated stack for comparing the cost of SASL in the benchmarks).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import uuid
from pathlib import Path

from devstack import credentials, supervise
from devstack.fleet import Fleet
from devstack.paths import repo_root, state_dir

NAME = "kafka"
JAVA_INSTALL = "sudo apt-get update && sudo apt-get install -y openjdk-17-jdk-headless maven"
ADMIN = "admin"
CONTROLLER = "controller"
MECHANISM = "SCRAM-SHA-512"
SECURITY_ENV = "GPUCLOUD_DEVSTACK_KAFKA_SECURITY"
SASL, PLAINTEXT = "sasl", "plaintext"


class KafkaError(RuntimeError):
    pass


def _home() -> Path:
    path = state_dir() / "kafka"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _pom() -> Path:
    return repo_root() / "tools" / "kafka" / "pom.xml"


def _libs() -> Path:
    return _home() / "libs"


def _require(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise KafkaError(f"{tool} not found; install it with: {JAVA_INSTALL}")
    return found


def ensure_jars() -> Path:
    """Fetch the broker jars unless the cached ones match the pom's hash."""
    libs = _libs()
    digest = hashlib.sha256(_pom().read_bytes()).hexdigest()
    stamp = _home() / "libs.stamp"
    if stamp.is_file() and stamp.read_text().strip() == digest and any(libs.glob("*.jar")):
        return libs
    mvn = _require("mvn")
    _require("java")
    if libs.exists():
        shutil.rmtree(libs)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(_pom()),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise KafkaError(
            f"fetching Kafka jars failed:\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
        )
    stamp.write_text(digest + "\n")
    return libs


def security() -> str:
    """sasl (the default) or plaintext ($GPUCLOUD_DEVSTACK_KAFKA_SECURITY)."""
    mode = os.environ.get(SECURITY_ENV, "").strip().lower() or SASL
    if mode not in (SASL, PLAINTEXT):
        raise KafkaError(f"{SECURITY_ENV}={mode!r}: expected {SASL} or {PLAINTEXT}")
    return mode


def principals(fleet: Fleet) -> tuple[str, ...]:
    """Every SCRAM principal of the broker: the admin and one per service."""
    return (ADMIN, *fleet.kafka_principals)


def password(principal: str) -> str:
    return credentials.password(f"kafka:{principal}")


def client_env(fleet: Fleet, principal: str) -> dict[str, str]:
    """The GPUCLOUD_KAFKA_* settings (platformkit.kafka.KafkaSettings) of a client that
    authenticates as `principal`."""
    env = {"GPUCLOUD_KAFKA_BOOTSTRAP": fleet.kafka_bootstrap}
    if security() == PLAINTEXT:
        env["GPUCLOUD_KAFKA_SECURITY_PROTOCOL"] = "PLAINTEXT"
        return env
    if principal not in principals(fleet):
        raise KeyError(f"{principal!r} is no Kafka principal of deploy/fleet.toml")
    env.update(
        {
            "GPUCLOUD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "GPUCLOUD_KAFKA_SASL_MECHANISM": MECHANISM,
            "GPUCLOUD_KAFKA_SASL_USERNAME": principal,
            "GPUCLOUD_KAFKA_SASL_PASSWORD": password(principal),
        }
    )
    return env


def _jaas(module: str, **options: str) -> str:
    values = " ".join(f'{k}="{v}"' for k, v in options.items())
    return f"org.apache.kafka.common.security.{module} required {values};"


def _listener_props(fleet: Fleet) -> dict[str, str]:
    listeners = f"BROKER://{fleet.kafka_bootstrap},CONTROLLER://{fleet.kafka_controller}"
    props = {
        "listeners": listeners,
        "advertised.listeners": listeners,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "BROKER",
    }
    if security() == PLAINTEXT:
        props["listener.security.protocol.map"] = "CONTROLLER:PLAINTEXT,BROKER:PLAINTEXT"
        return props
    controller_pw = password(CONTROLLER)
    props.update(
        {
            "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,BROKER:SASL_PLAINTEXT",
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.broker.sasl.enabled.mechanisms": MECHANISM,
            "listener.name.broker.scram-sha-512.sasl.jaas.config": _jaas(
                "scram.ScramLoginModule", username=ADMIN, password=password(ADMIN)
            ),
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": _jaas(
                "plain.PlainLoginModule",
                username=CONTROLLER,
                password=controller_pw,
                **{f"user_{CONTROLLER}": controller_pw},
            ),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{ADMIN};User:{CONTROLLER}",
            "allow.everyone.if.no.acl.found": "false",
        }
    )
    return props


def _write_config(fleet: Fleet) -> Path:
    home = _home()
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": fleet.kafka_controller,
        **_listener_props(fleet),
        "log.dirs": str(home / "data"),
        "num.partitions": "3",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # Consumers commit offsets after every database commit; the coordinator's default
        # 5 ms append linger would add 5 ms to each (bench/README.md, outbox latency).
        "group.coordinator.append.linger.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "log.retention.hours": "48",
        "log.segment.bytes": str(64 * 1024 * 1024),
    }
    server = home / "server.properties"
    # it holds the controller's and the admin's passwords
    fd = os.open(server, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{k}={v}\n" for k, v in props.items()))
    (home / "log4j2.properties").write_text(
        "status = warn\n"
        "appender.out.type = Console\n"
        "appender.out.name = STDOUT\n"
        "appender.out.layout.type = PatternLayout\n"
        "appender.out.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = INFO\n"
        "rootLogger.appenderRef.out.ref = STDOUT\n"
        "logger.request.name = kafka.request.logger\n"
        "logger.request.level = WARN\n"
        "logger.state.name = state.change.logger\n"
        "logger.state.level = WARN\n"
        "logger.log.name = org.apache.kafka.storage.internals.log\n"
        "logger.log.level = WARN\n"
        "logger.logmgr.name = kafka.log\n"
        "logger.logmgr.level = WARN\n"
    )
    return server


def _java(libs: Path, main: str, *args: str, heap: tuple[str, ...] = ()) -> list[str]:
    return [
        _require("java"),
        *heap,
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={_home() / 'log4j2.properties'}",
        "-cp",
        f"{libs}/*",
        main,
        *args,
    ]


def _credentials_digest(fleet: Fleet) -> str:
    """What the storage's SCRAM credentials were formatted from (mode, principals, passwords)."""
    mode = security()
    users = {p: password(p) for p in principals(fleet)} if mode == SASL else {}
    return hashlib.sha256(json.dumps([mode, users], sort_keys=True).encode()).hexdigest()


def _format(libs: Path, server: Path, fleet: Fleet) -> bool:
    """Format the log dir once (KRaft needs meta.properties before the first start), again
    when the credentials it was formatted with changed; True if it formatted now."""
    data = _home() / "data"
    stamp = _home() / "credentials.stamp"
    digest = _credentials_digest(fleet)
    if (data / "meta.properties").is_file():
        if stamp.is_file() and stamp.read_text().strip() == digest:
            return False
        # formatted before SASL, or for other principals: start again with empty topics
        shutil.rmtree(data)
    stamp.unlink(missing_ok=True)
    id_file = _home() / "cluster.id"
    # Never format with an id starting with '-': the storage tool's argument parser takes it
    # for an option (1 fresh state folder in 64 failed so; Kafka's own Uuid avoids it too).
    if not id_file.is_file() or id_file.read_text().startswith("-"):
        id_file.write_text(_cluster_id() + "\n")
    cluster_id = id_file.read_text().strip()
    cmd = _java(
        libs,
        "kafka.tools.StorageTool",
        "format",
        "--standalone",
        "-t",
        cluster_id,
        "-c",
        str(server),
    )
    if security() == SASL:
        for principal in principals(fleet):
            cmd += ["--add-scram", f"{MECHANISM}=[name={principal},password={password(principal)}]"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise KafkaError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")
    stamp.write_text(digest + "\n")
    return True


def _cluster_id() -> str:
    """A KRaft cluster id: a UUID in URL-safe base64, never starting with '-'."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


def start(fleet: Fleet) -> bool:
    """Start the broker unless it runs (does not wait for it); True when its storage was
    formatted now (a fresh cluster: its topics and ACLs are still to be made)."""
    if supervise.running_pid(NAME):
        return False
    libs = ensure_jars()
    server = _write_config(fleet)
    formatted = _format(libs, server, fleet)
    cmd = _java(
        libs,
        "kafka.Kafka",
        str(server),
        heap=(
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
        ),
    )
    supervise.spawn(NAME, cmd, cwd=_home())
    return formatted


_API_VERSIONS, _UNSUPPORTED_VERSION = 18, 35


def _api_versions(bootstrap: str, timeout: float = 2.0) -> bool:
    """Send an ApiVersions v0 request, which a SASL listener answers before authentication,
    and whether the broker answered it. The broker serves clients only once it has started
    (registered with the controller and caught up with the metadata log)."""
    host, port = bootstrap.rsplit(":", 1)
    client = b"devstack"
    request = struct.pack(">hhih", _API_VERSIONS, 0, 1, len(client)) + client
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", _recv(sock, 4))[0]
        reply = _recv(sock, size)
    correlation, error = struct.unpack(">ih", reply[:6])
    return correlation == 1 and error in (0, _UNSUPPORTED_VERSION)


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def ready(bootstrap: str) -> bool:
    try:
        return _api_versions(bootstrap)
    except (OSError, struct.error):
        return False


def wait_ready(fleet: Fleet, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready(fleet.kafka_bootstrap):
            return
        if not supervise.running_pid(NAME):
            raise KafkaError(
                "Kafka exited while starting; last lines of "
                f"{supervise.log_file(NAME)}:\n{supervise.tail(supervise.log_file(NAME))}"
            )
        time.sleep(0.25)
    raise KafkaError(
        f"Kafka did not answer on {fleet.kafka_bootstrap} within {timeout:.0f}s; last lines of "
        f"{supervise.log_file(NAME)}:\n{supervise.tail(supervise.log_file(NAME))}"
    )


def stop() -> int | None:
    return supervise.stop_many([NAME], timeout=30).get(NAME)
