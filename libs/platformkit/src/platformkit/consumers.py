"""Event consumers: inbox deduplication, commit-after-database, dead-letter topic.

Each subscription is a faststream Kafka subscriber with manual acknowledgement:

1. the record is parsed as a CloudEvent (a record that is not one goes to the DLQ at once);
2. the handler runs inside one unit of work, together with the inbox row
   (consumer, event id); an event already in the inbox is acknowledged and skipped;
3. the database commits, THEN the offset is committed. A crash in between redelivers the
   event, and the inbox makes the redelivery change nothing;
4. a handler that keeps failing is retried with backoff up to `max_attempts`, then the
   record goes to `<topic>.dlq` with the error in its headers and the consumer moves on.
"""

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from sqlalchemy import text

from platformkit.db import Database, UnitOfWork
from platformkit.envelope import CloudEvent, EnvelopeError, from_kafka
from platformkit.faults import crash_point
from platformkit.telemetry import continue_trace, current_event_id, current_tenant

log = logging.getLogger(__name__)

Handler = Callable[[CloudEvent, UnitOfWork], Awaitable[None]]

_CLAIM_INBOX = text(
    "INSERT INTO inbox (consumer, event_id, event_type) VALUES (:consumer, :event_id, :type)"
    " ON CONFLICT DO NOTHING"
)


@dataclasses.dataclass(frozen=True)
class Subscription:
    """`consumer` names the consumer group (prefixed by the service) and its inbox rows."""

    consumer: str
    topics: Sequence[str]
    handle: Handler
    deduplicate: bool = True


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


class _RawDecoder:
    """Hands the record's bytes through untouched: the envelope is parsed by us."""

    async def __call__(self, msg: Any) -> Any:
        return msg.body


@dataclasses.dataclass
class EventConsumer:
    subscription: Subscription
    service: str
    db: Database
    producer: AIOKafkaProducer
    max_attempts: int = 5
    processed: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    _attempts: dict[tuple[str, int, int], int] = dataclasses.field(default_factory=dict)

    @property
    def group_id(self) -> str:
        return f"{self.service}.{self.subscription.consumer}"

    def register(self, broker: KafkaBroker) -> None:
        subscriber = broker.subscriber(
            *self.subscription.topics,
            group_id=self.group_id,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            decoder=_RawDecoder(),
        )
        subscriber(self.on_message)

    async def on_message(self, message: KafkaMessage) -> None:
        record = message.raw_message
        position = (record.topic, record.partition, record.offset)
        try:
            event = from_kafka(record.headers, record.value)
        except EnvelopeError as exc:
            await self._dead_letter(record, exc, attempts=1)
            await message.ack()
            return
        try:
            await self.apply(event, record.topic)
        except Exception as exc:
            attempts = self._attempts.get(position, 0) + 1
            if attempts >= self.max_attempts:
                self._attempts.pop(position, None)
                await self._dead_letter(record, exc, attempts=attempts)
                await message.ack()
                return
            self._attempts[position] = attempts
            log.warning(
                "event handling failed; will retry",
                extra={"fields": {"attempt": attempts, "error": repr(exc), "topic": record.topic}},
            )
            await asyncio.sleep(min(0.05 * 2**attempts, 2.0))
            await message.nack()
            return
        self._attempts.pop(position, None)
        crash_point("consumer.after_commit")
        await message.ack()

    async def apply(self, event: CloudEvent, topic: str) -> bool:
        """Apply one event exactly once; returns False for a duplicate."""
        tenant_token = current_tenant.set(event.tenant)
        event_token = current_event_id.set(str(event.id))
        try:
            with continue_trace(
                f"consume {topic}", event.traceparent, **{"messaging.destination": topic}
            ):
                async with self.db.unit_of_work() as uow:
                    if self.subscription.deduplicate:
                        claimed = await uow.session.execute(
                            _CLAIM_INBOX,
                            {
                                "consumer": self.subscription.consumer,
                                "event_id": event.id,
                                "type": event.type,
                            },
                        )
                        if claimed.rowcount == 0:
                            self.duplicates += 1
                            return False
                    await self.subscription.handle(event, uow)
                    await uow.commit()
            self.processed += 1
            return True
        finally:
            current_tenant.reset(tenant_token)
            current_event_id.reset(event_token)

    async def _dead_letter(self, record: Any, error: Exception, attempts: int) -> None:
        headers = [h for h in (record.headers or []) if not h[0].startswith("dlq_")]
        headers += [
            ("dlq_error", repr(error)[:1000].encode()),
            ("dlq_attempts", str(attempts).encode()),
            ("dlq_consumer", self.group_id.encode()),
            ("dlq_topic", record.topic.encode()),
            ("dlq_partition", str(record.partition).encode()),
            ("dlq_offset", str(record.offset).encode()),
            ("dlq_at", str(time.time()).encode()),
        ]
        await self.producer.send_and_wait(
            dlq_topic(record.topic), value=record.value, key=record.key, headers=headers
        )
        self.dead_lettered += 1
        log.error(
            "event dead-lettered",
            extra={
                "fields": {"topic": record.topic, "offset": record.offset, "error": repr(error)}
            },
        )


def build_consumers(
    subscriptions: Sequence[Subscription],
    *,
    service: str,
    db: Database,
    producer: AIOKafkaProducer,
    max_attempts: int,
) -> list[EventConsumer]:
    return [
        EventConsumer(s, service=service, db=db, producer=producer, max_attempts=max_attempts)
        for s in subscriptions
    ]
