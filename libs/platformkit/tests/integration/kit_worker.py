"""A relay or a consumer in its own process, so tests can kill it at a fault point.

    python kit_worker.py relay    DB_URL BOOTSTRAP
    python kit_worker.py consume  DB_URL BOOTSTRAP TOPIC GROUP EXPECTED

`relay` publishes the whole outbox then exits. `consume` applies events (each inserts one
row into `effects`, with no unique constraint, so a double application would show) until
EXPECTED distinct events are in the inbox, then prints its counters as JSON.
Set GPUCLOUD_FAULTS to crash at a named point.
"""

import asyncio
import json
import sys

import psycopg
from faststream.kafka import KafkaBroker

from platformkit.consumers import EventConsumer, Subscription
from platformkit.db import Database, UnitOfWork
from platformkit.envelope import CloudEvent
from platformkit.kafka import idempotent_producer
from platformkit.relay import OutboxRelay


async def record_effect(event: CloudEvent, uow: UnitOfWork) -> None:
    await uow.execute("INSERT INTO effects (event_id) VALUES (:id)", {"id": event.id})


async def relay(db_url: str, bootstrap: str) -> None:
    producer = idempotent_producer(bootstrap, "kit-worker")
    await producer.start()
    try:
        worker = OutboxRelay(db_url, producer)
        while await worker.backlog():
            async with await psycopg.AsyncConnection.connect(worker.database_url) as conn:
                await worker.publish_batch(conn)
    finally:
        await producer.stop()


async def consume(db_url: str, bootstrap: str, topic: str, group: str, expected: int) -> None:
    db = Database(db_url)
    producer = idempotent_producer(bootstrap, "kit-worker")
    broker = KafkaBroker(bootstrap, logger=None)
    consumer = EventConsumer(Subscription(group, (topic,), record_effect), "kit", db, producer)
    consumer.register(broker)
    await producer.start()
    await broker.start()
    try:
        for _ in range(600):
            async with db.unit_of_work() as uow:
                row = await uow.fetch_one("SELECT count(*) AS n FROM inbox")
            if row["n"] >= expected and consumer.processed + consumer.duplicates >= 1:
                break
            await asyncio.sleep(0.05)
        # let the last acknowledgement reach Kafka before we go
        await asyncio.sleep(0.3)
    finally:
        await broker.stop()
        await producer.stop()
        await db.dispose()
    print(json.dumps({"processed": consumer.processed, "duplicates": consumer.duplicates}))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "relay":
        asyncio.run(relay(*args))
    else:
        asyncio.run(consume(*args[:4], int(args[4])))
