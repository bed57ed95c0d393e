"""Dead-letter replay: `python -m platformkit.dlq replay <topic> --bootstrap HOST:PORT`.

Reads `<topic>.dlq` from the last replayed position (consumer group `dlq-replay.<topic>`)
and republishes each record to its original topic with its original CloudEvents headers.
Consumers that already applied an event skip it through their inbox, so replaying is safe
to repeat. Stops when the dead-letter topic is drained.
"""

import argparse
import asyncio
import sys

from aiokafka import AIOKafkaConsumer

from platformkit.consumers import dlq_topic
from platformkit.kafka import idempotent_producer


async def replay(topic: str, bootstrap: str, *, idle_timeout_ms: int = 2000) -> int:
    consumer = AIOKafkaConsumer(
        dlq_topic(topic),
        bootstrap_servers=bootstrap,
        group_id=f"dlq-replay.{topic}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = idempotent_producer(bootstrap, client_id=f"dlq-replay.{topic}")
    await consumer.start()
    await producer.start()
    replayed = 0
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=idle_timeout_ms, max_records=500)
            if not batches:
                return replayed
            for records in batches.values():
                for record in records:
                    headers = [h for h in record.headers if not h[0].startswith("dlq_")]
                    await producer.send(topic, value=record.value, key=record.key, headers=headers)
                    replayed += 1
            await producer.flush()
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platformkit.dlq")
    sub = parser.add_subparsers(dest="command", required=True)
    rp = sub.add_parser("replay", help="republish a dead-letter topic to its original topic")
    rp.add_argument("topic", help="the original topic, e.g. iam.tenant.v1")
    rp.add_argument("--bootstrap", default="127.0.0.1:19092")
    args = parser.parse_args(argv)
    count = asyncio.run(replay(args.topic, args.bootstrap))
    print(f"replayed {count} record(s) from {dlq_topic(args.topic)} to {args.topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
