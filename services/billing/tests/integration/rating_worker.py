"""billing's rating consumer in its own process, so tests can kill it at a crash point.

    python rating_worker.py DB_URL TOPIC GROUP EXPECTED     (Kafka: GPUCLOUD_KAFKA_*)

Rates usage from TOPIC with a rating batch subscription run by a ServiceRuntime, as billing's
bootstrap wires it, until EXPECTED distinct intervals are settled (in the ledger or set
aside as unrated) and the group's offsets reach the end, then prints its counters as JSON.
Set GPUCLOUD_FAULTS to crash at a named point.
"""

import asyncio
import dataclasses
import json
import sys

from billing.app.rating import UsageRater
from billing.bootstrap import DEFINITION
from billing.settings import BillingSettings
from platformkit.consumers import BatchSubscription
from platformkit.kafka import KafkaSettings
from platformkit.runtime import ServiceRuntime
from platformkit.settings import ServiceSettings


async def main(url: str, topic: str, group: str, expected: int) -> None:
    rater = UsageRater(BillingSettings(rating_batch_size=7))
    definition = dataclasses.replace(
        DEFINITION,
        subscriptions=(),
        batch_subscriptions=[
            BatchSubscription(group, (topic,), rater, max_records=7, max_wait_ms=50)
        ],
        jobs=(),
        relay=False,
    )
    settings = ServiceSettings(
        "billing", kafka=KafkaSettings.from_env(), database_url=url, heartbeat_interval_s=0
    )
    runtime = ServiceRuntime(definition, settings)
    db, consumer = runtime.database, runtime.consumers[0]
    await runtime.start()
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
        await runtime.stop()
    print(json.dumps({"batches": consumer.batches, **rater.stats.__dict__}))


if __name__ == "__main__":
    url, topic, group, expected = sys.argv[1:]
    asyncio.run(main(url, topic, group, int(expected)))
