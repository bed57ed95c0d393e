"""In-memory projections fed from one Kafka topic, read from the beginning by every replica.

For small, fast-changing facts every instance must know within seconds (revoked API keys,
current memberships): no consumer group, no committed offsets, every partition read from
the start on each (re)connect. Applying the same records in the same order lands on the
same state, so a replay after a reconnect is harmless. `ready` turns true once the feed
has read up to the end offsets the topic had when it connected. A record whose CloudEvents
`source` may not publish on the topic is skipped and counted (`refused`), never applied.
"""

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from platformkit import kafka as kafka_clients
from platformkit.envelope import source_allowed

log = logging.getLogger(__name__)


class TopicFeed:
    """Subclasses implement `apply(ce_type, value)` and may override `after_poll()`."""

    name = "feed"

    def __init__(self, settings: kafka_clients.Settings, topic: str, client_id: str) -> None:
        self.kafka = settings
        self.topic = topic
        self.client_id = client_id
        self.ready = False
        self.refused = 0
        self._task: asyncio.Task[None] | None = None

    def apply(self, ce_type: str | None, value: bytes | None) -> None:
        raise NotImplementedError

    def after_poll(self) -> None:
        """Called after every poll (e.g. to prune expired entries)."""

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def run(self) -> None:
        """Consume until cancelled; reconnects (and replays) after a Kafka failure."""
        backoff = 0.2
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(f"{self.name} interrupted", extra={"fields": {"error": repr(exc)}})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _consume(self) -> None:
        consumer = kafka_clients.consumer(
            self.kafka,
            self.topic,
            client_id=self.client_id,
            group_id=None,  # every replica reads every partition; no offsets committed
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            metadata_max_age_ms=30_000,  # pick up the topic's partitions soon after creation
            fetch_max_wait_ms=200,
        )
        await consumer.start()
        targets: dict[TopicPartition, int] | None = None
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
                for records in batches.values():
                    for record in records:
                        if not source_allowed(self.topic, header(record.headers, "ce_source")):
                            self.refused += 1
                            log.warning(
                                f"{self.name}: record from a source that may not publish here",
                                extra={"fields": {"topic": record.topic, "offset": record.offset}},
                            )
                            continue
                        self.apply(header(record.headers, "ce_type"), record.value)
                self.after_poll()
                if self.ready:
                    continue
                assigned = consumer.assignment()
                if not assigned:
                    continue  # the topic's metadata is not known yet
                if targets is None:
                    targets = await consumer.end_offsets(list(assigned))
                if await _reached(consumer, targets):
                    self.ready = True
                    log.info(f"{self.name} caught up")
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()


async def _reached(consumer: AIOKafkaConsumer, targets: Mapping[TopicPartition, int]) -> bool:
    for tp, end in targets.items():
        if await consumer.position(tp) < end:
            return False
    return True


def header(headers: Any, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return value.decode() if isinstance(value, bytes | bytearray) else str(value)
    return None
