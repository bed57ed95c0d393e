"""Test infrastructure, chosen in this order (architecture.md §7):

1. explicit URLs: GPUCLOUD_TEST_KAFKA_BOOTSTRAP and GPUCLOUD_TEST_PG_ADMIN_URL (a PLAINTEXT
   Kafka);
2. testcontainers, when a Docker engine answers (PLAINTEXT Kafka);
3. the local devstack (real Kafka from Maven Central, PostgreSQL from Debian), started
   on demand. Its broker authenticates every client (SASL/SCRAM) and authorizes it by ACL:
   `infra.kafka` are the admin principal's settings (a super user), which the test helpers
   (topics, producers) use unless a test means to be one service's principal.

Every Kafka client of a test is built from `infra.kafka` through platformkit.kafka's
factories. A missing service fails the run; nothing is skipped for want of infrastructure.
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
from platformkit.kafka import KafkaSettings
from platformkit.settings import ServiceSettings


@dataclasses.dataclass(frozen=True)
class TestInfra:
    kafka: KafkaSettings
    pg_admin_url: str

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka.bootstrap

    def database_url(self, database: str, role: str | None = None, password: str = "") -> str:
        """The admin's URL of `database`, or that of another login `role`."""
        base, _, _ = self.pg_admin_url.rpartition("/")
        if role is not None:
            scheme, _, host = base.partition("://")
            base = f"{scheme}://{role}:{password}@{host.rpartition('@')[2]}"
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
        return ServiceSettings(service_name=service_name, kafka=self.kafka, **overrides)


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def infra() -> Iterator[TestInfra]:
    bootstrap = os.environ.get("GPUCLOUD_TEST_KAFKA_BOOTSTRAP")
    pg = os.environ.get("GPUCLOUD_TEST_PG_ADMIN_URL")
    if bootstrap and pg:
        yield TestInfra(KafkaSettings(bootstrap), pg)
    elif _docker_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with (
            KafkaContainer("apache/kafka:4.1.1").with_kraft() as k,
            PostgresContainer("postgres:15", driver=None) as p,
        ):
            yield TestInfra(KafkaSettings(k.get_bootstrap_server()), p.get_connection_url())
    else:
        from devstack.infra import ensure_infra

        local = ensure_infra()
        yield TestInfra(KafkaSettings.from_env(local.kafka_env()), local.pg_admin_url)


@pytest.fixture
def fresh_database(infra: TestInfra) -> Iterator[str]:
    """A new, empty database for one test, dropped afterwards."""
    with infra.scratch_database() as url:
        yield url


@dataclasses.dataclass(frozen=True)
class DatabaseRoles:
    """A fresh database with a runtime login of its own (no privilege until migrations grant
    them): `owner_url` is the admin's (it creates the database and runs the migrations, as a
    service's owner role does), `runtime_url` the runtime role's, `runtime_role` its name."""

    owner_url: str
    runtime_url: str
    runtime_role: str


@pytest.fixture
def database_roles(infra: TestInfra) -> Iterator[DatabaseRoles]:
    with fresh_database_roles(infra) as roles:
        yield roles


@pytest.fixture(scope="session")
def make_database_roles(infra: TestInfra):
    """`with make_database_roles() as roles:`, for a fixture of a wider scope."""
    return lambda: fresh_database_roles(infra)


@contextlib.contextmanager
def fresh_database_roles(infra: TestInfra) -> Iterator[DatabaseRoles]:
    """The runtime role is named like the database, so that devstack's pg_hba (`sameuser`)
    admits it there and nowhere else; it is dropped with the database."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    password = uuid.uuid4().hex
    with psycopg.connect(infra.pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")
    try:
        runtime_url = infra.database_url(name, role=name, password=password)
        yield DatabaseRoles(infra.database_url(name), runtime_url, name)
    finally:
        with psycopg.connect(infra.pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{name}"')


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
