"""devstack's infra on the real thing: Kafka answers produce/consume, each service role reaches
its own database only."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from devstack import fleet
from devstack.infra import Infra, ensure_infra

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def infra() -> Infra:
    return ensure_infra()


def test_ensure_infra_is_idempotent(infra: Infra) -> None:
    assert ensure_infra() == infra


async def test_kafka_round_trip(infra: Infra) -> None:
    topic = f"devstack-test-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"ping")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.kafka_bootstrap,
        group_id=f"{topic}-group",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    assert message.value == b"ping"


def test_admin_connects(infra: Infra) -> None:
    with psycopg.connect(infra.pg_admin_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("package", fleet.load().database_packages)
def test_role_owns_its_database_only(infra: Infra, package: str) -> None:
    with psycopg.connect(infra.database_url(package), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS devstack_probe (id int)")
        conn.execute("DROP TABLE devstack_probe")
    others = [p for p in fleet.load().database_packages if p != package] + ["postgres"]
    base = infra.database_url(package).rsplit("/", 1)[0]
    for other in others:
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(f"{base}/{other}", connect_timeout=5).close()
