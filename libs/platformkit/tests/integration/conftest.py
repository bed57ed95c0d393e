import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from platformkit import kafka
from platformkit.definition import ServiceDefinition
from platformkit.kafka import KafkaSettings
from platformkit.migrate import apply_migrations
from platformkit.runtime import ServiceRuntime
from platformkit.service import KIT_MIGRATIONS

WORKER = Path(__file__).with_name("kit_worker.py")

pytestmark = pytest.mark.integration


@pytest.fixture
def kit_database(fresh_database: str) -> str:
    """A database with the kit's tables and an `effects` table that counts applications."""
    apply_migrations(fresh_database, [KIT_MIGRATIONS])
    import psycopg

    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE effects (event_id uuid NOT NULL, at timestamptz DEFAULT now())")
    return fresh_database


async def read_all(
    settings: KafkaSettings, topic: str, *, idle_ms: int = 1500, min_records: int = 0
):
    """Every record of a topic from the beginning, until nothing arrives for idle_ms."""
    reader = kafka.feed_consumer(settings, topic, "tests-read-all")
    await reader.start()
    records = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while asyncio.get_running_loop().time() < deadline:
            batch = await reader.getmany(timeout_ms=idle_ms)
            if not batch and len(records) >= min_records:
                break
            for part in batch.values():
                records.extend(part)
    finally:
        await reader.stop()
    return records


def kit_runtime(
    infra, db_url: str, *, subscriptions=(), batch_subscriptions=(), max_attempts: int = 5
) -> ServiceRuntime:
    """A service `kit` on the test's Kafka and database that only consumes (no relay, no
    heartbeat), run by the real ServiceRuntime."""
    definition = ServiceDefinition(
        name="kit",
        version="0",
        description="a consuming test service",
        route_handlers=[],
        subscriptions=subscriptions,
        batch_subscriptions=batch_subscriptions,
        relay=False,
    )
    settings = infra.settings(
        "kit", database_url=db_url, heartbeat_interval_s=0, consumer_max_attempts=max_attempts
    )
    return ServiceRuntime(definition, settings)


def run_worker(
    settings: KafkaSettings, *args: str, faults: str = "", timeout: float = 60
) -> subprocess.CompletedProcess:
    """kit_worker.py in a child process, connecting to Kafka with `settings` (its env)."""
    env = {**os.environ, **settings.as_env(), "GPUCLOUD_FAULTS": faults}
    return subprocess.run(
        [sys.executable, str(WORKER), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def worker_stats(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
