"""devstack's infra on the real thing: Kafka answers produce/consume (as the admin principal),
each service's owner and runtime roles reach their own database only."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from devstack import fleet
from devstack.infra import Infra, ensure_infra
from platformkit import kafka
from platformkit.kafka import KafkaSettings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def infra() -> Infra:
    return ensure_infra()


def test_ensure_infra_is_idempotent(infra: Infra) -> None:
    assert ensure_infra() == infra


async def test_kafka_round_trip(infra: Infra) -> None:
    topic = f"devstack-test-{uuid.uuid4().hex[:8]}"
    admin = KafkaSettings.from_env(infra.kafka_env())
    producer = kafka.producer(admin, "devstack-test")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"ping")
    finally:
        await producer.stop()
    reader = kafka.consumer(
        admin,
        topic,
        client_id="devstack-test",
        group_id=f"{topic}-group",
        auto_offset_reset="earliest",
    )
    await reader.start()
    try:
        message = await asyncio.wait_for(reader.getone(), 30)
    finally:
        await reader.stop()
    assert message.value == b"ping"


def test_admin_connects(infra: Infra) -> None:
    with psycopg.connect(infra.pg_admin_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("package", fleet.load().database_packages)
def test_roles_reach_their_own_database_only(infra: Infra, package: str) -> None:
    with psycopg.connect(infra.owner_url(package), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS devstack_probe (id int)")
        conn.execute("DROP TABLE devstack_probe")
    with psycopg.connect(infra.runtime_url(package), autocommit=True) as conn:
        # the runtime role creates nothing (its DML comes from the migrations' grants)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE devstack_probe (id int)")
    others = [p for p in fleet.load().database_packages if p != package] + ["postgres"]
    for url in (infra.owner_url(package), infra.runtime_url(package)):
        base = url.rsplit("/", 1)[0]
        for other in others:
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(f"{base}/{other}", connect_timeout=5).close()
