"""Batch subscriptions on real Kafka and PostgreSQL, run by the ServiceRuntime: one
transaction per batch, `prepare` run ahead in the read-ahead, a poison event (bad envelope,
or a payload `prepare` or the handler refuses) isolated to the DLQ without losing its
batch-mates, offsets committed after the database."""

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


class Decoding:
    """A handler object with a pure `prepare`: the engine calls it for each batch (ahead,
    in its read-ahead task) and hands its result to `__call__`."""

    def __init__(self) -> None:
        self.prepared_in: set[str] = set()

    def prepare(self, events):
        task = asyncio.current_task()
        self.prepared_in.add(task.get_name() if task else "")
        decoded = [(event.id, event.decode(dict)) for event in events]
        if any(payload.get("bad_payload") for _, payload in decoded):
            raise ValueError("prepare refuses this batch")
        return tuple(decoded)

    async def __call__(self, decoded, uow) -> None:
        for event_id, payload in decoded:
            if payload.get("fail"):
                raise RuntimeError("handler refuses this one")
            await uow.execute("INSERT INTO effects (event_id) VALUES (:id)", {"id": event_id})


class TestBatchSubscription:
    async def test_prepared_ahead_poison_isolated_rest_of_the_batch_applied_once(
        self, infra, kit_database, topic, producer
    ):
        good = [
            new_event(type="test.thing.happened", source="tests", subject="k", payload={})
            for _ in range(5)
        ]
        refused = new_event(
            type="test.thing.happened", source="tests", subject="k", payload={"fail": True}
        )
        undecodable = new_event(
            type="test.thing.happened", source="tests", subject="k", payload={"bad_payload": 1}
        )
        await producer.send_and_wait(topic, value=b"not a cloudevent", key=b"k")
        for event in [*good[:2], refused, good[2], undecodable, *good[3:]]:
            await producer.send_and_wait(
                topic, value=event.data, key=event.key, headers=event.headers()
            )

        handler = Decoding()
        subscription = BatchSubscription("batchy", (topic,), handler, max_wait_ms=200)
        assert subscription.prepare == handler.prepare  # the handler's own, by default
        runtime = kit_runtime(
            infra, kit_database, batch_subscriptions=[subscription], max_attempts=2
        )
        (consumer,) = runtime.consumers
        await runtime.start()
        try:
            for _ in range(600):
                if consumer.dead_lettered >= 3 and await consumer.lag() == 0:
                    break
                await asyncio.sleep(0.05)
            assert consumer.dead_lettered == 3
            assert await consumer.lag() == 0  # offsets committed past the whole batch
        finally:
            await runtime.stop()
        assert sorted(_effects(kit_database)) == sorted(e.id for e in good)
        assert "read-ahead" in handler.prepared_in  # the batch was decoded ahead
        dead = await read_all(infra.kafka, topic + ".dlq", min_records=3)
        errors = sorted(dict(r.headers)["dlq_error"] for r in dead)
        assert b"EnvelopeError" in errors[0]
        assert b"handler refuses" in errors[1]
        assert b"prepare refuses" in errors[2]
