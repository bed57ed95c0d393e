"""Test infrastructure, chosen in this order (architecture.md §7):

1. explicit URLs: GPUCLOUD_TEST_KAFKA_BOOTSTRAP and GPUCLOUD_TEST_PG_ADMIN_URL;
2. testcontainers, when a Docker engine answers;
3. the local devstack (real Kafka from Maven Central, PostgreSQL from Debian), started
   on demand.

A missing service fails the run; nothing is skipped for want of infrastructure.
"""

import contextlib
import dataclasses
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic

from platformkit import kafka
from platformkit.settings import ServiceSettings


@dataclasses.dataclass(frozen=True)
class TestInfra:
    kafka_bootstrap: str
    pg_admin_url: str

    def database_url(self, database: str) -> str:
        base, _, _ = self.pg_admin_url.rpartition("/")
        return f"{base}/{database}"

    @contextlib.contextmanager
    def scratch_database(self, prefix: str = "test") -> Iterator[str]:
        """A new, empty database, dropped (connections forced out) afterwards."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.pg_admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield self.database_url(name)
        finally:
            with psycopg.connect(self.pg_admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def settings(self, service_name: str = "tests", **overrides) -> ServiceSettings:
        """Service settings on this Kafka: what every kit Kafka client is built from."""
        return ServiceSettings(
            service_name=service_name, kafka_bootstrap=self.kafka_bootstrap, **overrides
        )


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def infra() -> Iterator[TestInfra]:
    kafka = os.environ.get("GPUCLOUD_TEST_KAFKA_BOOTSTRAP")
    pg = os.environ.get("GPUCLOUD_TEST_PG_ADMIN_URL")
    if kafka and pg:
        yield TestInfra(kafka, pg)
    elif _docker_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with (
            KafkaContainer("apache/kafka:4.1.1").with_kraft() as k,
            PostgresContainer("postgres:15", driver=None) as p,
        ):
            yield TestInfra(k.get_bootstrap_server(), p.get_connection_url())
    else:
        from devstack.infra import ensure_infra

        local = ensure_infra()
        yield TestInfra(local.kafka_bootstrap, local.pg_admin_url)


@pytest.fixture
def fresh_database(infra: TestInfra) -> Iterator[str]:
    """A new, empty database for one test, dropped afterwards."""
    with infra.scratch_database() as url:
        yield url


@pytest.fixture
def unique_topic() -> str:
    return f"test.{uuid.uuid4().hex[:10]}.v1"


@pytest.fixture
async def topic(infra: TestInfra, unique_topic: str) -> AsyncIterator[str]:
    """A new topic (4 partitions) and its `.dlq` twin, deleted afterwards."""
    admin = kafka.admin_client(infra.settings())
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(unique_topic, 4, 1), NewTopic(unique_topic + ".dlq", 4, 1)]
        )
        yield unique_topic
    finally:
        await admin.delete_topics([unique_topic, unique_topic + ".dlq"])
        await admin.close()


@pytest.fixture
async def producer(infra: TestInfra) -> AsyncIterator[AIOKafkaProducer]:
    """The platform's idempotent producer (acks=all), as services and relays use it."""
    p = kafka.producer(infra.settings())
    await p.start()
    yield p
    await p.stop()
