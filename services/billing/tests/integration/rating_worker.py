"""billing's rating consumer in its own process, so tests can kill it at a crash point.

    python rating_worker.py DB_URL TOPIC GROUP EXPECTED     (Kafka: GPUCLOUD_KAFKA_*)

Rates usage from TOPIC with platformkit's BatchConsumer until EXPECTED distinct intervals
are settled (in the ledger or set aside as unrated) and the group's offsets reach the end,
then prints its counters as JSON. Set GPUCLOUD_FAULTS to crash at a named point.
"""

import asyncio
import json
import sys

from billing.app.rating import UsageRater
from billing.settings import BillingSettings
from platformkit.batch_consumers import BatchConsumer, BatchSubscription
from platformkit.db import Database
from platformkit.kafka import KafkaSettings, idempotent_producer


async def main(url: str, topic: str, group: str, expected: int) -> None:
    db = Database(url, pool_size=2)
    kafka = KafkaSettings.from_env()
    producer = idempotent_producer(kafka, "rating-worker")
    rater = UsageRater(BillingSettings(rating_batch_size=7))
    consumer = BatchConsumer(
        BatchSubscription(group, (topic,), rater, max_records=7, max_wait_ms=50),
        service="billing",
        db=db,
        producer=producer,
        kafka=kafka,
    )
    await producer.start()
    await consumer.start()
    try:
        for _ in range(1200):
            async with db.unit_of_work() as uow:
                row = await uow.fetch_one(
                    "SELECT (SELECT count(DISTINCT transaction_id) FROM transfers"
                    " WHERE kind = 'usage') + (SELECT count(*) FROM unrated_usage) AS n"
                )
            if row["n"] >= expected and consumer.batches and await consumer.lag() == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        await consumer.stop()
        await producer.stop()
        await db.dispose()
    print(json.dumps({"batches": consumer.batches, **rater.stats.__dict__}))


if __name__ == "__main__":
    url, topic, group, expected = sys.argv[1:]
    asyncio.run(main(url, topic, group, int(expected)))
