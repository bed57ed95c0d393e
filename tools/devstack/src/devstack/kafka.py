"""Apache Kafka 4.x, single node in KRaft mode (broker and controller in one JVM).

The jars come from Maven Central through tools/kafka/pom.xml (`mvn dependency:copy-dependencies`,
cached under <state>/kafka/libs and fetched again only when the pom changes). Storage is formatted
once; the broker runs detached with its log in <state>/logs/kafka.log.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import socket
import struct
import subprocess
import time
import uuid
from pathlib import Path

from devstack import supervise
from devstack.fleet import Fleet
from devstack.paths import repo_root, state_dir

NAME = "kafka"
JAVA_INSTALL = "sudo apt-get update && sudo apt-get install -y openjdk-17-jdk-headless maven"


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


def _write_config(fleet: Fleet) -> Path:
    home = _home()
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": fleet.kafka_controller,
        "listeners": f"PLAINTEXT://{fleet.kafka_bootstrap},CONTROLLER://{fleet.kafka_controller}",
        "advertised.listeners": f"PLAINTEXT://{fleet.kafka_bootstrap},"
        f"CONTROLLER://{fleet.kafka_controller}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
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
    server.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
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


def _format(libs: Path, server: Path) -> None:
    """Format the log dir once (KRaft needs meta.properties before the first start)."""
    if (_home() / "data" / "meta.properties").is_file():
        return
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
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise KafkaError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")


def _cluster_id() -> str:
    """A KRaft cluster id: a UUID in URL-safe base64, never starting with '-'."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


def start(fleet: Fleet) -> int:
    """Start the broker unless it runs; returns its pid (does not wait for it)."""
    pid = supervise.running_pid(NAME)
    if pid:
        return pid
    libs = ensure_jars()
    server = _write_config(fleet)
    _format(libs, server)
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
    return supervise.spawn(NAME, cmd, cwd=_home())


def _metadata_brokers(bootstrap: str, timeout: float = 2.0) -> int:
    """Send a Metadata v4 request (no topics) and return how many brokers the answer lists."""
    host, port = bootstrap.rsplit(":", 1)
    client = b"devstack"
    header = struct.pack(">hhih", 3, 4, 1, len(client)) + client
    body = struct.pack(">i?", 0, False)  # topics: empty array; allow_auto_topic_creation: false
    request = header + body
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", _recv(sock, 4))[0]
        reply = _recv(sock, size)
    # correlation_id int32, throttle_time_ms int32, brokers array length int32
    _corr, _throttle, brokers = struct.unpack(">iii", reply[:12])
    return brokers


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
        return _metadata_brokers(bootstrap) >= 1
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
