"""Batch consumers on real Kafka and PostgreSQL: one transaction per batch, a poison event
isolated to the DLQ without losing its batch-mates, offsets committed after the database."""

import asyncio

import psycopg
import pytest

from platformkit.consumers import BatchSubscription
from platformkit.envelope import new_event

from .conftest import kit_runtime, read_all

pytestmark = pytest.mark.integration


def _effects(db_url: str) -> list:
    with psycopg.connect(db_url) as conn:
        return [r[0] for r in conn.execute("SELECT event_id FROM effects").fetchall()]


class TestBatchConsumer:
    async def test_poison_is_isolated_and_the_rest_of_its_batch_applies_once(
        self, infra, kit_database, topic, producer
    ):
        async def handle(events, uow):
            for event in events:
                if event.decode(dict).get("fail"):
                    raise RuntimeError("handler refuses this one")
                await uow.execute("INSERT INTO effects (event_id) VALUES (:id)", {"id": event.id})

        good = [
            new_event(type="test.thing.happened", source="tests", subject="k", payload={})
            for _ in range(5)
        ]
        bad = new_event(
            type="test.thing.happened", source="tests", subject="k", payload={"fail": True}
        )
        await producer.send_and_wait(topic, value=b"not a cloudevent", key=b"k")
        for event in [*good[:2], bad, *good[2:]]:
            await producer.send_and_wait(
                topic, value=event.data, key=event.key, headers=event.headers()
            )

        runtime = kit_runtime(
            infra,
            kit_database,
            batch_subscriptions=[
                BatchSubscription("batchy", (topic,), handle, max_records=100, max_wait_ms=200)
            ],
            max_attempts=2,
        )
        consumer = runtime.consumers[0]
        await runtime.start()
        try:
            for _ in range(400):
                if consumer.dead_lettered >= 2 and await consumer.lag() == 0:
                    break
                await asyncio.sleep(0.05)
            assert consumer.dead_lettered == 2
            assert await consumer.lag() == 0  # offsets committed past the whole batch
        finally:
            await runtime.stop()
        assert sorted(_effects(kit_database)) == sorted(e.id for e in good)
        dead = await read_all(infra.kafka, topic + ".dlq", min_records=2)
        errors = sorted(dict(r.headers)["dlq_error"] for r in dead)
        assert b"EnvelopeError" in errors[0] and b"handler refuses" in errors[1]
