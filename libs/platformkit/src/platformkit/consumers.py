"""Event consumers: inbox deduplication, commit-after-database, dead-letter topic.

Each subscription is a faststream Kafka batch subscriber with manual acknowledgement:

1. the records of a poll are parsed as CloudEvents (a record that is not one, or whose
   `source` may not publish on its topic, goes to the DLQ at once);
2. their inbox rows (consumer, event id) are claimed and the handler runs for every event
   not seen before, all inside ONE unit of work; a redelivered event finds its inbox row
   and is skipped;
3. the database commits, THEN the offsets are committed (in the background while the
   next poll is applied, one commit in flight at a time). A crash in between redelivers
   the batch, and the inbox makes the redelivery change nothing;
4. if the batch fails, it is rolled back and replayed one event per transaction, each
   retried with backoff up to `max_attempts`; an event that still fails goes to
   `<topic>.dlq` with the error in its headers and the consumer moves on. A database or
   network outage is not the event's fault: it is retried until it passes, never
   dead-lettered.

One transaction and one offset commit per poll (not per event) is what keeps
commit-to-consumer latency low under load (bench/outbox.py measures it).
"""

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer, TopicPartition
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.types import Text

from platformkit.db import Database, UnitOfWork
from platformkit.envelope import CloudEvent, EnvelopeError, from_kafka, verify_source
from platformkit.faults import crash_point
from platformkit.telemetry import continue_trace, current_event_id, current_tenant

log = logging.getLogger(__name__)

Handler = Callable[[CloudEvent, UnitOfWork], Awaitable[None]]

_CLAIM_INBOX = text(
    "INSERT INTO inbox (consumer, event_id, event_type)"
    " SELECT :consumer, id, type FROM unnest(:ids, :types) AS claimed(id, type)"
    " ON CONFLICT DO NOTHING RETURNING event_id"
).bindparams(
    bindparam("ids", type_=ARRAY(UUID(as_uuid=True))), bindparam("types", type_=ARRAY(Text))
)


@dataclasses.dataclass(frozen=True)
class Subscription:
    """`consumer` names the consumer group (prefixed by the service) and its inbox rows."""

    consumer: str
    topics: Sequence[str]
    handle: Handler
    deduplicate: bool = True
    max_batch: int = 500


async def partition_lag(consumer: Any, group: str) -> dict[tuple[str, str, int], int]:
    """End offset minus committed offset of every partition `consumer` holds."""
    if consumer is None or not consumer.assignment():
        return {}
    partitions = sorted(consumer.assignment())
    ends = await consumer.end_offsets(partitions)
    return {
        (group, tp.topic, tp.partition): ends[tp] - (await consumer.committed(tp) or 0)
        for tp in partitions
    }


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


async def dead_letter(
    producer: AIOKafkaProducer, record: Any, error: Exception, *, attempts: int, consumer: str
) -> None:
    """Send a record to `<topic>.dlq` with why, how often and from where in its headers
    (the original CloudEvents headers stay, so a replay restores the event as it was)."""
    headers = [h for h in (record.headers or []) if not h[0].startswith("dlq_")]
    headers += [
        ("dlq_error", repr(error)[:1000].encode()),
        ("dlq_attempts", str(attempts).encode()),
        ("dlq_consumer", consumer.encode()),
        ("dlq_topic", record.topic.encode()),
        ("dlq_partition", str(record.partition).encode()),
        ("dlq_offset", str(record.offset).encode()),
        ("dlq_at", str(time.time()).encode()),
    ]
    await producer.send_and_wait(
        dlq_topic(record.topic), value=record.value, key=record.key, headers=headers
    )
    log.error(
        "event dead-lettered",
        extra={"fields": {"topic": record.topic, "offset": record.offset, "error": repr(error)}},
    )


def is_transient(exc: BaseException) -> bool:
    """Failures of the infrastructure rather than of the event: retry, never dead-letter."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc,
        OperationalError
        | InterfaceError
        | psycopg.OperationalError
        | ConnectionError
        | TimeoutError,
    )


class _RawDecoder:
    """Hands the records through untouched: the envelopes are parsed by us."""

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
    _pending_commit: "asyncio.Future[None] | None" = None

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
            batch=True,
            max_records=self.subscription.max_batch,
            batch_timeout_ms=10,
        )
        subscriber(self.on_batch)
        self._subscriber = subscriber

    async def lag_by_partition(self) -> dict[tuple[str, str, int], int]:
        """Records of each assigned partition not yet committed (for /metrics)."""
        consumer = getattr(getattr(self, "_subscriber", None), "consumer", None)
        return await partition_lag(consumer, self.group_id)

    async def on_batch(self, message: KafkaMessage) -> None:
        raw = message.raw_message
        records = raw if isinstance(raw, tuple) else (raw,)
        batch: list[tuple[Any, CloudEvent]] = []
        for record in records:
            try:
                event = verify_source(record.topic, from_kafka(record.headers, record.value))
                batch.append((record, event))
            except EnvelopeError as exc:
                await self._dead_letter(record, exc, attempts=1)
        if batch:
            try:
                await self._apply(batch)
            except Exception as exc:
                if is_transient(exc):
                    log.warning("consumer paused: infrastructure unavailable", exc_info=exc)
                    await asyncio.sleep(1.0)
                    await message.nack()  # the whole poll is read again
                    return
                for record, event in batch:
                    await self._apply_alone(record, event)
        crash_point("consumer.after_commit")
        await self._commit_offsets(message.consumer, records)

    async def _commit_offsets(self, consumer: Any, records: Sequence[Any]) -> None:
        """Commit this poll's offsets (explicit ones, never "whatever was consumed so far")
        while the next poll is fetched and applied. One commit is in flight at a time, so
        they land in order; one that never lands (a crash, a rebalance) only redelivers
        events the inbox already holds."""
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        if self._pending_commit is not None:
            await self._pending_commit
        self._pending_commit = asyncio.ensure_future(self._commit(consumer, offsets))

    async def _commit(self, consumer: Any, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
        except Exception as exc:
            log.warning("offset commit failed; events may be redelivered", exc_info=exc)

    async def _apply_alone(self, record: Any, event: CloudEvent) -> None:
        attempts = 0
        while True:
            try:
                await self._apply([(record, event)])
                return
            except Exception as exc:
                if is_transient(exc):
                    await asyncio.sleep(1.0)
                    continue
                attempts += 1
                if attempts >= self.max_attempts:
                    await self._dead_letter(record, exc, attempts=attempts)
                    return
                log.warning(
                    "event handling failed; will retry",
                    extra={"fields": {"attempt": attempts, "error": repr(exc)}},
                )
                await asyncio.sleep(min(0.05 * 2**attempts, 2.0))

    async def _apply(self, batch: Sequence[tuple[Any, CloudEvent]]) -> None:
        """Apply a batch in one transaction; events already in the inbox are skipped."""
        applied = 0
        async with self.db.unit_of_work() as uow:
            fresh = await self._claim(uow, [event for _, event in batch])
            for record, event in batch:
                if event.id not in fresh:
                    continue
                fresh.discard(event.id)  # the same event twice in one poll applies once
                await self._handle(record.topic, event, uow)
                applied += 1
            await uow.commit()
        self.processed += applied
        self.duplicates += len(batch) - applied

    async def _claim(self, uow: UnitOfWork, events: Sequence[CloudEvent]) -> set[Any]:
        if not self.subscription.deduplicate:
            return {event.id for event in events}
        result = await uow.session.execute(
            _CLAIM_INBOX,
            {
                "consumer": self.subscription.consumer,
                "ids": [e.id for e in events],
                "types": [e.type for e in events],
            },
        )
        return set(result.scalars().all())

    async def _handle(self, topic: str, event: CloudEvent, uow: UnitOfWork) -> None:
        tenant_token = current_tenant.set(event.tenant)
        event_token = current_event_id.set(str(event.id))
        try:
            with continue_trace(
                f"consume {topic}", event.traceparent, **{"messaging.destination": topic}
            ):
                await self.subscription.handle(event, uow)
        finally:
            current_tenant.reset(tenant_token)
            current_event_id.reset(event_token)

    async def _dead_letter(self, record: Any, error: Exception, attempts: int) -> None:
        await dead_letter(self.producer, record, error, attempts=attempts, consumer=self.group_id)
        self.dead_lettered += 1


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
