"""Consumers believe an event's CloudEvents `source` only where that service owns the topic's
family: a forged source is dead-lettered, never applied (real Kafka and PostgreSQL)."""

import asyncio
import uuid

import pytest
from aiokafka.admin import NewTopic

from platformkit.consumers import BatchSubscription, Subscription
from platformkit.envelope import new_event
from platformkit.kafka import admin_client

from .conftest import kit_runtime, read_all

pytestmark = pytest.mark.integration


@pytest.fixture
async def gpuaas_topic(infra):
    """A scratch topic of gpuaas's family (and its DLQ): only gpuaas may publish there."""
    name = f"gpuaas.source-test-{uuid.uuid4().hex[:8]}.v1"
    admin = admin_client(infra.kafka, "tests")
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1), NewTopic(name + ".dlq", 1, 1)])
        yield name
    finally:
        await admin.delete_topics([name, name + ".dlq"])
        await admin.close()


async def _send_forged_and_genuine(producer, topic):
    forged = new_event(type="gpuaas.allocation.released", source="billing", subject="a", payload={})
    genuine = new_event(type="gpuaas.allocation.released", source="gpuaas", subject="a", payload={})
    for event in (forged, genuine):
        await producer.send_and_wait(
            topic, value=event.data, key=event.key, headers=event.headers()
        )
    return forged, genuine


async def _applied_and_dead(kafka, topic, applied, counter, forged, genuine):
    for _ in range(300):
        if applied and counter() >= 1:
            break
        await asyncio.sleep(0.05)
    assert applied == [genuine.id]
    (dead,) = await read_all(kafka, topic + ".dlq", min_records=1)
    headers = dict(dead.headers)
    assert headers["ce_id"] == str(forged.id).encode()
    assert b"SourceMismatch" in headers["dlq_error"]


@pytest.mark.parametrize("kind", ["per-event", "batch"])
async def test_the_consumer_dead_letters_a_forged_source(
    infra, kit_database, gpuaas_topic, producer, kind
):
    """Both paths of the one engine: a Subscription and a BatchSubscription."""
    applied = []

    async def handle(event, uow):
        applied.append(event.id)

    async def handle_batch(batch, uow):
        applied.extend(event.id for event in batch)

    forged, genuine = await _send_forged_and_genuine(producer, gpuaas_topic)
    if kind == "batch":
        runtime = kit_runtime(
            infra,
            kit_database,
            batch_subscriptions=[
                BatchSubscription("sources", (gpuaas_topic,), handle_batch, max_wait_ms=200)
            ],
        )
    else:
        runtime = kit_runtime(
            infra, kit_database, subscriptions=[Subscription("sources", (gpuaas_topic,), handle)]
        )
    consumer = runtime.consumers[0]
    await runtime.start()
    try:
        await _applied_and_dead(
            infra.kafka, gpuaas_topic, applied, lambda: consumer.dead_lettered, forged, genuine
        )
    finally:
        await runtime.stop()
