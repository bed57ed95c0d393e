"""Scaffolding shared by the benchmarks: scratch database and topic, clock, statistics, output.

Every benchmark runs against the local devstack's Kafka and PostgreSQL (started on demand by
`ensure_infra()`), in a database and a topic of its own that are removed afterwards. Its Kafka
clients authenticate as devstack's admin principal (`bench_kafka`), over SASL/SCRAM unless the
stack runs the PLAINTEXT broker (GPUCLOUD_DEVSTACK_KAFKA_SECURITY=plaintext: the baseline that
prices authentication, bench/README.md).
"""

import contextlib
import datetime as dt
import json
import math
import os
import platform
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
from aiokafka.admin import NewTopic

from platformkit.kafka import KafkaSettings, admin_client

RESULTS_DIR = Path(__file__).parent / "results"


def now() -> float:
    """Seconds on CLOCK_MONOTONIC. On Linux this is one system-wide clock, so stamps taken
    in two processes of the same machine compare directly (time.monotonic uses it too)."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


@contextlib.contextmanager
def scratch_database(pg_admin_url: str) -> Iterator[str]:
    """A new empty database with a random name; dropped (connections forced out) afterwards."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{pg_admin_url.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_kafka(infra: Any) -> KafkaSettings:
    """The devstack admin principal's connection (a super user: any scratch topic, any group)."""
    return KafkaSettings.from_env(infra.kafka_env())


@contextlib.asynccontextmanager
async def scratch_topic(kafka: KafkaSettings, partitions: int) -> AsyncIterator[str]:
    """A new topic with a random name; deleted afterwards."""
    name = f"bench.{uuid.uuid4().hex[:10]}.v1"
    admin = admin_client(kafka, "bench")
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
        yield name
    finally:
        with contextlib.suppress(Exception):
            await admin.delete_topics([name])
        await admin.close()


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summarize_ms(seconds: Sequence[float]) -> dict[str, float | int]:
    """count, p50, p90, p99, max and mean of durations given in seconds, in milliseconds."""
    ordered = sorted(seconds)
    if not ordered:
        return {"count": 0}
    summary: dict[str, float | int] = {"count": len(ordered)}
    for p in (50, 90, 99):
        summary[f"p{p}_ms"] = round(percentile(ordered, p) * 1000, 2)
    summary["max_ms"] = round(ordered[-1] * 1000, 2)
    summary["mean_ms"] = round(sum(ordered) / len(ordered) * 1000, 2)
    return summary


def environment() -> dict[str, Any]:
    """What the figures depend on besides the code: machine, Python, commit."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout
        )
    except (OSError, subprocess.CalledProcessError):
        sha, dirty = "unknown", False
    return {
        "git_sha": sha,
        "git_dirty": dirty,
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],  # other work on the host skews the tail
        "python": platform.python_version(),
        # what the Kafka figures include: SASL/SCRAM authentication or none
        "kafka_security": os.environ.get("GPUCLOUD_DEVSTACK_KAFKA_SECURITY") or "sasl",
        "platform": platform.platform(),
    }


def save_results(name: str, results: dict[str, Any]) -> Path:
    """Write bench/results/<name>-<UTC timestamp>.json and return its path; also to the file
    `GPUCLOUD_BENCH_RESULT_FILE` names when set (how `bench all` collects each run)."""
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    text = json.dumps(results, indent=2) + "\n"
    path.write_text(text)
    if collect := os.environ.get("GPUCLOUD_BENCH_RESULT_FILE"):
        Path(collect).write_text(json.dumps({**results, "_saved_as": str(path)}, indent=2))
    return path


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain fixed-width table: first column left-aligned, the others right-aligned."""
    cells = [[str(c) for c in header]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        first, *rest = row
        padded = [c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
        return "  ".join([first.ljust(widths[0]), *padded])

    print(f"\n{title}")
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
