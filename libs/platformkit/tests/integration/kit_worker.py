"""A relay or a consumer in its own process, so tests can kill it at a fault point.

    python kit_worker.py relay    DB_URL
    python kit_worker.py consume  DB_URL TOPIC GROUP EXPECTED

Kafka: the GPUCLOUD_KAFKA_* settings of the environment.

`relay` publishes the whole outbox then exits. `consume` applies events (each inserts one
row into `effects`, with no unique constraint, so a double application would show) until
EXPECTED distinct events are in the inbox, then prints its counters as JSON.
Set GPUCLOUD_FAULTS to crash at a named point.
"""

import asyncio
import json
import sys

import psycopg

from platformkit import kafka
from platformkit.consumers import Subscription
from platformkit.db import UnitOfWork
from platformkit.definition import ServiceDefinition
from platformkit.envelope import CloudEvent
from platformkit.kafka import KafkaSettings
from platformkit.relay import OutboxRelay
from platformkit.runtime import ServiceRuntime
from platformkit.settings import ServiceSettings


async def record_effect(event: CloudEvent, uow: UnitOfWork) -> None:
    await uow.execute("INSERT INTO effects (event_id) VALUES (:id)", {"id": event.id})


def _settings(db_url: str) -> ServiceSettings:
    """The worker's settings: its Kafka connection from GPUCLOUD_KAFKA_* (the parent's)."""
    return ServiceSettings(
        "kit", kafka=KafkaSettings.from_env(), database_url=db_url, heartbeat_interval_s=0
    )


async def relay(db_url: str) -> None:
    producer = kafka.producer(_settings(db_url), "kit-worker")
    await producer.start()
    try:
        worker = OutboxRelay(db_url, producer)
        while await worker.backlog():
            async with await psycopg.AsyncConnection.connect(worker.database_url) as conn:
                await worker.publish_batch(conn)
    finally:
        await producer.stop()


async def consume(db_url: str, topic: str, group: str, expected: int) -> None:
    definition = ServiceDefinition(
        name="kit",
        version="0",
        description="kit worker",
        route_handlers=[],
        subscriptions=[Subscription(group, (topic,), record_effect)],
        relay=False,
    )
    runtime = ServiceRuntime(definition, _settings(db_url))
    db, consumer = runtime.database, None
    await runtime.start()
    try:
        consumer = runtime.consumers[0]
        for _ in range(600):
            async with db.unit_of_work() as uow:
                row = await uow.fetch_one("SELECT count(*) AS n FROM inbox")
            if row["n"] >= expected and consumer.processed + consumer.duplicates >= 1:
                break
            await asyncio.sleep(0.05)
        # let the last acknowledgement reach Kafka before we go
        await asyncio.sleep(0.3)
    finally:
        await runtime.stop()
    print(json.dumps({"processed": consumer.processed, "duplicates": consumer.duplicates}))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "relay":
        asyncio.run(relay(*args))
    else:
        asyncio.run(consume(*args[:3], int(args[3])))
