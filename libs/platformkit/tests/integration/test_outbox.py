"""Outbox + relay on real PostgreSQL and Kafka."""

import asyncio
import datetime as dt
import uuid

import psycopg
import pytest
from aiokafka.errors import OutOfOrderSequenceNumber

from platformkit import kafka
from platformkit.db import Database
from platformkit.envelope import new_event
from platformkit.outbox import write_events
from platformkit.relay import OutboxRelay
from platformkit.retention import Retention, purge

from .conftest import read_all, run_worker, worker_stats

pytestmark = pytest.mark.integration
HOUR = dt.timedelta(hours=1)


async def _write(db: Database, topic: str, subject: str, *, commit: bool) -> uuid.UUID:
    event = new_event(
        type="test.thing.happened", source="tests", subject=subject, payload={"subject": subject}
    )
    async with db.unit_of_work() as uow:
        await write_events(uow, topic, [event])
        if commit:
            await uow.commit()
    return event.id


async def _publish_all(db_url: str, producer) -> int:
    relay = OutboxRelay(db_url, producer)
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        return await relay.publish_batch(conn)


class TestTransactionalOutbox:
    async def test_rolled_back_transaction_publishes_nothing(
        self, infra, kit_database, topic, producer
    ):
        db = Database(kit_database)
        await _write(db, topic, "rolled-back", commit=False)
        committed = await _write(db, topic, "committed", commit=True)
        assert await _publish_all(kit_database, producer) == 1
        records = await read_all(infra.kafka, topic, min_records=1)
        ids = [dict(r.headers)["ce_id"].decode() for r in records]
        assert ids == [str(committed)]
        await db.dispose()

    async def test_committed_event_is_published_exactly_once_in_order_per_key(
        self, infra, kit_database, topic, producer
    ):
        db = Database(kit_database)
        written = [await _write(db, topic, f"agg-{i % 3}", commit=True) for i in range(30)]
        assert await _publish_all(kit_database, producer) == 30
        assert await _publish_all(kit_database, producer) == 0  # nothing left, nothing twice
        records = await read_all(infra.kafka, topic, min_records=30)
        ids = [dict(r.headers)["ce_id"].decode() for r in records]
        assert sorted(ids) == sorted(str(i) for i in written)
        for key in (b"agg-0", b"agg-1", b"agg-2"):
            per_key = [dict(r.headers)["ce_id"].decode() for r in records if r.key == key]
            assert per_key == [
                str(i) for n, i in enumerate(written) if f"agg-{n % 3}".encode() == key
            ]
        await db.dispose()

    async def test_relay_wakes_on_commit_through_notify(self, infra, kit_database, topic, producer):
        db = Database(kit_database)
        relay = OutboxRelay(kit_database, producer, poll_interval_s=60)
        task = asyncio.create_task(relay.run())
        try:
            await asyncio.sleep(0.5)  # let it LISTEN; with a 60 s poll only NOTIFY wakes it
            event_id = await _write(db, topic, "notified", commit=True)
            records = await read_all(infra.kafka, topic, min_records=1, idle_ms=500)
            assert [dict(r.headers)["ce_id"].decode() for r in records] == [str(event_id)]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await db.dispose()

    async def test_relay_killed_after_publish_redelivers_and_consumers_ignore_it(
        self, infra, kit_database, topic
    ):
        db = Database(kit_database)
        event_id = await _write(db, topic, "crashy", commit=True)
        await db.dispose()

        crashed = run_worker(infra.kafka, "relay", kit_database, faults="relay.after_publish")
        assert crashed.returncode == 137, crashed.stderr[-2000:]
        with psycopg.connect(kit_database) as conn:
            unsent = conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()
        assert unsent == (1,)  # published, but never marked sent

        assert run_worker(infra.kafka, "relay", kit_database).returncode == 0
        records = await read_all(infra.kafka, topic, min_records=2)
        assert [dict(r.headers)["ce_id"].decode() for r in records] == [str(event_id)] * 2

        stats = worker_stats(
            run_worker(infra.kafka, "consume", kit_database, topic, "relay-crash", "1")
        )
        assert stats == {"processed": 1, "duplicates": 1}
        with psycopg.connect(kit_database) as conn:
            assert conn.execute("SELECT count(*) FROM effects").fetchone() == (1,)


class TestBrokenProducer:
    async def test_relay_outlives_a_producer_whose_sender_died(self, infra, kit_database, topic):
        """aiokafka's sender task ends for good on OutOfOrderSequenceNumber (a broker that
        lost the producer's state): the batch it held never completes and every later send
        fails. The relay's batch times out instead of holding its lock for ever, and the
        next batch goes through a fresh producer: every row is published."""
        producer = kafka.renewing_producer(infra.settings())
        await producer.start()
        db = Database(kit_database)
        try:
            written = [await _write(db, topic, f"agg-{i}", commit=True) for i in range(5)]
            broken = producer.current

            async def out_of_order(*_args, **_kwargs):
                raise OutOfOrderSequenceNumber()

            broken._sender._send_produce_req = out_of_order  # the broker's answer, injected
            relay = OutboxRelay(kit_database, producer, delivery_timeout_s=3)
            async with await psycopg.AsyncConnection.connect(kit_database) as conn:
                with pytest.raises((OutOfOrderSequenceNumber, TimeoutError)):
                    await relay.publish_batch(conn)
                assert producer.broken
                assert await relay.publish_batch(conn) == 5
                assert await relay.publish_batch(conn) == 0
            assert producer.current is not broken and producer.renewals == 1
            records = await read_all(infra.kafka, topic, min_records=5)
            ids = {dict(r.headers)["ce_id"].decode() for r in records}
            assert ids == {str(i) for i in written}
        finally:
            await producer.stop()
            await db.dispose()


class TestBulkOutbox:
    async def test_add_events_writes_every_event_in_one_statement_and_order(
        self, infra, kit_database, topic, producer
    ):
        db = Database(kit_database)
        events = [
            new_event(
                type="test.thing.happened",
                source="tests",
                subject="bulk",
                payload={"n": n},
                tenant="t-1",
            )
            for n in range(5)
        ]
        async with db.unit_of_work() as uow:
            await write_events(uow, topic, events)
            await uow.commit()
        await db.dispose()
        assert await _publish_all(kit_database, producer) == 5
        records = await read_all(infra.kafka, topic, min_records=5)
        assert [dict(r.headers)["ce_id"].decode() for r in records] == [str(e.id) for e in events]
        assert [r.value for r in records] == [e.data for e in events]


class TestRetention:
    async def test_each_table_keeps_its_horizon_and_unsent_rows_forever(self, kit_database, topic):
        """purge() with a clock: rows older than each table's retention at `now` go, the
        rest stay; an unsent outbox row is never deleted, however old."""
        db = Database(kit_database)
        for subject in ("old-sent", "fresh-sent", "old-unsent"):
            await _write(db, topic, subject, commit=True)
        await db.dispose()
        now = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
        with psycopg.connect(kit_database, autocommit=True) as conn:
            conn.execute("DELETE FROM inbox")
            conn.execute("DELETE FROM idempotency_keys")
            conn.execute(
                "UPDATE outbox SET sent_at = %s WHERE subject = 'old-sent'", (now - HOUR * 25,)
            )
            conn.execute(
                "UPDATE outbox SET sent_at = %s WHERE subject = 'fresh-sent'", (now - HOUR * 23,)
            )
            conn.execute(
                "UPDATE outbox SET created_at = %s WHERE subject = 'old-unsent'",
                (now - HOUR * 999,),
            )
            for age in (HOUR * 24 * 9, HOUR * 24 * 7):
                conn.execute(
                    "INSERT INTO inbox (consumer, event_id, event_type, received_at)"
                    " VALUES ('c', %s, 't', %s)",
                    (uuid.uuid4(), now - age),
                )
            for name, age in (("old", HOUR * 25), ("fresh", HOUR * 1)):
                conn.execute(
                    "INSERT INTO idempotency_keys (scope, key, request_hash, response_status,"
                    " response_body, created_at) VALUES ('s', %s, 'h', 201, '', %s)",
                    (name, now - age),
                )
        retention = Retention(slice_rows=1)  # slices of one row: the loop must go on
        async with await psycopg.AsyncConnection.connect(kit_database, autocommit=True) as conn:
            deleted = await purge(conn, retention, now)
            assert deleted == {"inbox": 1, "idempotency_keys": 1, "outbox": 1}
            assert await purge(conn, retention, now) == {
                "inbox": 0, "idempotency_keys": 0, "outbox": 0
            }  # fmt: skip
        with psycopg.connect(kit_database) as conn:
            left = {r[0] for r in conn.execute("SELECT subject FROM outbox")}
            inbox = [r[0] for r in conn.execute("SELECT received_at FROM inbox")]
            keys = {r[0] for r in conn.execute("SELECT key FROM idempotency_keys")}
        assert left == {"fresh-sent", "old-unsent"}
        assert inbox == [now - HOUR * 24 * 7] and keys == {"fresh"}


def test_an_inbox_shorter_than_kafka_retention_refuses_to_start() -> None:
    Retention().check(dt.timedelta(hours=168))
    with pytest.raises(ValueError, match="applied twice"):
        Retention(inbox=dt.timedelta(days=2)).check(dt.timedelta(hours=168))
    with pytest.raises(ValueError, match="positive"):
        Retention(idempotency=dt.timedelta(0)).check(dt.timedelta(hours=1))
