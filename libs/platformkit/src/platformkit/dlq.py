"""Dead-letter replay: `python -m platformkit.dlq replay <topic> [--bootstrap HOST:PORT]`.

It runs as the admin principal of the GPUCLOUD_KAFKA_* settings (a service principal may
not write another family's topic, which a replay does).

Reads `<topic>.dlq` from the last replayed position (consumer group `dlq-replay.<topic>`)
and republishes each record to its original topic with its original CloudEvents headers.
Consumers that already applied an event skip it through their inbox, so replaying is safe
to repeat. Stops at the end the dead-letter topic had when the replay began.
"""

import argparse
import asyncio
import dataclasses
import sys

from aiokafka import TopicPartition

from platformkit import kafka
from platformkit.consumers import dlq_topic
from platformkit.settings import ServiceSettings


async def replay(topic: str, settings: ServiceSettings) -> int:
    """Republish what the dead-letter topic holds now. Records dead-lettered again while
    we replay (a still-broken event) wait for the next replay instead of looping."""
    dead = dlq_topic(topic)
    name = f"dlq-replay.{topic}"
    consumer = kafka.offsets_reader(settings, client_id=name, group_id=name)
    producer = kafka.producer(settings, client_id=name)
    await consumer.start()
    await producer.start()
    replayed = 0
    try:
        partitions = await producer.partitions_for(dead)
        assigned = [TopicPartition(dead, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        end = await consumer.end_offsets(assigned)
        while [tp for tp in assigned if await consumer.position(tp) < end[tp]]:
            batches = await consumer.getmany(*assigned, timeout_ms=1000, max_records=500)
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= end[tp]:
                        consumer.seek(tp, end[tp])
                        break
                    headers = [h for h in record.headers if not h[0].startswith("dlq_")]
                    await producer.send(topic, value=record.value, key=record.key, headers=headers)
                    replayed += 1
            await producer.flush()
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()
    return replayed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platformkit.dlq")
    sub = parser.add_subparsers(dest="command", required=True)
    rp = sub.add_parser("replay", help="republish a dead-letter topic to its original topic")
    rp.add_argument("topic", help="the original topic, e.g. iam.tenant.v1")
    rp.add_argument("--bootstrap", help="Kafka brokers (default: GPUCLOUD_KAFKA_BOOTSTRAP)")
    args = parser.parse_args(argv)
    settings = ServiceSettings.from_env("dlq-replay")
    if args.bootstrap:
        settings = dataclasses.replace(
            settings, kafka=dataclasses.replace(settings.kafka, bootstrap=args.bootstrap)
        )
    count = asyncio.run(replay(args.topic, settings))
    print(f"replayed {count} record(s) from {dlq_topic(args.topic)} to {args.topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
