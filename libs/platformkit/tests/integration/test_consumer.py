"""Inbox consumers on real Kafka and PostgreSQL: crash recovery, poison messages, replay."""

import asyncio

import psycopg
import pytest

from platformkit.consumers import Subscription
from platformkit.dlq import replay
from platformkit.envelope import new_event

from .conftest import kit_runtime, read_all, run_worker, worker_stats

pytestmark = pytest.mark.integration


async def _send(producer, topic, event):
    await producer.send_and_wait(topic, value=event.data, key=event.key, headers=event.headers())


def _effects(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT count(*) FROM effects").fetchone()[0]


class TestCrashBetweenDatabaseAndOffsetCommit:
    async def test_redelivered_event_changes_nothing(self, infra, kit_database, topic, producer):
        event = new_event(type="test.thing.happened", source="tests", subject="a", payload={})
        await _send(producer, topic, event)

        crashed = run_worker(
            infra.kafka,
            "consume",
            kit_database,
            topic,
            "crash",
            "1",
            faults="consumer.after_commit",
        )
        assert crashed.returncode == 137, crashed.stderr[-2000:]
        assert _effects(kit_database) == 1  # committed before the crash

        again = worker_stats(run_worker(infra.kafka, "consume", kit_database, topic, "crash", "1"))
        assert again == {"processed": 0, "duplicates": 1}  # redelivered, recognised, skipped
        assert _effects(kit_database) == 1


class TestPoisonMessages:
    async def test_poison_goes_to_dlq_consumer_keeps_going_and_replay_applies_it(
        self, infra, kit_database, topic, producer
    ):
        failing = {"on": True}

        async def handle(event, uow):
            if event.decode(dict).get("fail") and failing["on"]:
                raise RuntimeError("handler refuses this one")
            await uow.execute("INSERT INTO effects (event_id) VALUES (:id)", {"id": event.id})

        runtime = kit_runtime(
            infra,
            kit_database,
            subscriptions=[Subscription("poison", (topic,), handle)],
            max_attempts=3,
        )
        consumer = runtime.consumers[0]
        bad = new_event(
            type="test.thing.happened", source="tests", subject="k", payload={"fail": True}
        )
        good = new_event(type="test.thing.happened", source="tests", subject="k", payload={})
        await producer.send_and_wait(topic, value=b"not a cloudevent", key=b"k")
        await _send(producer, topic, bad)
        await _send(producer, topic, good)

        await runtime.start()
        try:
            for _ in range(300):
                if consumer.processed >= 1 and consumer.dead_lettered >= 2:
                    break
                await asyncio.sleep(0.05)
            assert consumer.dead_lettered == 2
            assert _effects(kit_database) == 1  # the good one, after both poisons

            dead = await read_all(infra.kafka, topic + ".dlq", min_records=2)
            headers = [dict(r.headers) for r in dead]
            assert [h.get(b"ce_id".decode()) for h in headers][1] == str(bad.id).encode()
            assert b"EnvelopeError" in headers[0]["dlq_error"]
            assert headers[1]["dlq_attempts"] == b"3"
            assert b"handler refuses" in headers[1]["dlq_error"]

            failing["on"] = False
            assert await replay(topic, infra.settings("dlq-replay")) == 2
            for _ in range(300):
                if _effects(kit_database) >= 2 and consumer.dead_lettered >= 3:
                    break
                await asyncio.sleep(0.05)
            # the repaired event applied once; the record that is no CloudEvent is dead again
            assert _effects(kit_database) == 2
            assert consumer.dead_lettered == 3
        finally:
            await runtime.stop()
