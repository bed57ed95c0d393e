"""Batch event consumers: many events, one database transaction, then one offset commit.

For streams where one transaction per event costs too much (usage rating at thousands of
events per second), a batch consumer reads up to `max_records` records with aiokafka's
`getmany`, hands all their CloudEvents to one handler inside ONE unit of work, commits the
database, THEN commits the offsets. A crash between the two redelivers the whole batch, so
the handler must make a redelivery change nothing (deduplication is the handler's: the
inbox of `platformkit.consumers` is one row per event, which a batch handler may replace by
a natural key of its own rows, e.g. a ledger transfer id derived from the event).

Failures: a batch that keeps failing is retried `max_attempts` times with backoff, then
applied one event per transaction so that only the events that fail on their own go to
`<topic>.dlq` (headers as in `platformkit.consumers`); a record that is not a CloudEvent, or
whose `source` may not publish on its topic, goes there at once. When the database itself is
down nothing is dead-lettered: the batch is read again later. Named crash points:
`batch_consumer.before_commit` and `batch_consumer.after_commit` (after the database commit,
before the offset commit).

While one batch is in the database the next one is already fetched and its envelopes
parsed (one batch of read-ahead, bounded by a queue of one): on a small machine the Kafka
client's CPU work then overlaps the wait for PostgreSQL. After a failure the read-ahead is
dropped and the consumer seeks back to its committed offsets.

The existing per-event `EventConsumer` is untouched; this module only adds.
"""

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError

from platformkit import kafka as kafka_clients
from platformkit.consumers import dead_letter, partition_lag
from platformkit.db import Database, UnitOfWork
from platformkit.envelope import CloudEvent, EnvelopeError, from_kafka, verify_source
from platformkit.faults import crash_point

log = logging.getLogger(__name__)
_to = msgspec.convert


def parse_record(headers: Any, value: bytes | None) -> CloudEvent:
    """`envelope.from_kafka`'s result, at half its cost for the usual record (aiokafka's
    pairs of str and bytes): no dict of every decoded header, and the id parsed by msgspec
    rather than `uuid.UUID` (a third of the cost). Anything unusual (a missing or non-bytes
    header, an id msgspec does not read) goes through `from_kafka`, which also raises the
    EnvelopeError, so both always agree (tests/unit/test_batch_parse.py)."""
    try:
        attrs = dict(headers)
        get = attrs.get
        tenant = get("ce_tenant")
        traceparent = get("traceparent")
        return CloudEvent(
            id=_to(attrs["ce_id"].decode(), uuid.UUID),
            type=attrs["ce_type"].decode(),
            source=attrs["ce_source"].decode(),
            subject=attrs["ce_subject"].decode(),
            time=dt.datetime.fromisoformat(attrs["ce_time"].decode()),
            data=value or b"",
            tenant=tenant.decode() if tenant is not None else None,
            traceparent=traceparent.decode() if traceparent is not None else None,
        )
    except Exception:
        return from_kafka(headers, value)


BatchHandler = Callable[[Sequence[CloudEvent], UnitOfWork], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class BatchSubscription:
    """`consumer` names the consumer group (prefixed by the service)."""

    consumer: str
    topics: Sequence[str]
    handle: BatchHandler
    max_records: int = 1000
    max_wait_ms: int = 100


@dataclasses.dataclass(frozen=True)
class _Fetched:
    records: list[Any]
    parsed: list[tuple[CloudEvent | EnvelopeError, Any]]
    offsets: dict[TopicPartition, int]


@dataclasses.dataclass
class BatchConsumer:
    subscription: BatchSubscription
    service: str
    db: Database
    producer: AIOKafkaProducer
    kafka: kafka_clients.Settings
    max_attempts: int = 5
    batches: int = 0
    processed: int = 0
    dead_lettered: int = 0
    commit_failures: int = 0
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def group_id(self) -> str:
        return f"{self.service}.{self.subscription.consumer}"

    async def start(self) -> None:
        self._consumer = kafka_clients.consumer(
            self.kafka,
            *self.subscription.topics,
            group_id=self.group_id,
            client_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"batch-consumer:{self.group_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()

    async def _run(self) -> None:
        while True:
            # One batch is read (and its envelopes parsed) while the previous one is in the
            # database: Kafka's share of the CPU overlaps the wait for PostgreSQL.
            ahead: asyncio.Queue[_Fetched | BaseException] = asyncio.Queue(maxsize=1)
            reader = asyncio.create_task(self._read_ahead(ahead), name="batch-reader")
            try:
                while True:
                    fetched = await ahead.get()
                    if isinstance(fetched, BaseException):
                        raise fetched
                    await self._handle(fetched)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Nothing was committed for the failed batch: the reader stops, the consumer
                # seeks back to the committed offsets and the batch is read again.
                log.exception("batch consumer loop failed", exc_info=exc)
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
                await self._rewind()
                await asyncio.sleep(1.0)
            finally:
                reader.cancel()

    async def _read_ahead(self, ahead: "asyncio.Queue[_Fetched | BaseException]") -> None:
        while True:
            try:
                fetched = await self._fetch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await ahead.put(exc)
                return
            if fetched.records:
                await ahead.put(fetched)

    async def poll_once(self) -> int:
        """Read, apply and commit one batch; returns the number of records handled."""
        fetched = await self._fetch()
        if fetched.records:
            await self._handle(fetched)
        return len(fetched.records)

    async def _fetch(self) -> "_Fetched":
        assert self._consumer is not None, "start() first"
        by_partition = await self._consumer.getmany(
            timeout_ms=self.subscription.max_wait_ms, max_records=self.subscription.max_records
        )
        records = [record for part in by_partition.values() for record in part]
        parsed: list[tuple[CloudEvent | EnvelopeError, Any]] = []
        for record in records:
            try:
                event = parse_record(record.headers, record.value)
                parsed.append((verify_source(record.topic, event), record))
            except EnvelopeError as exc:
                parsed.append((exc, record))
        offsets = {
            TopicPartition(tp.topic, tp.partition): part[-1].offset + 1
            for tp, part in by_partition.items()
            if part
        }
        return _Fetched(records, parsed, offsets)

    async def _handle(self, fetched: "_Fetched") -> None:
        assert self._consumer is not None, "start() first"
        events: list[tuple[CloudEvent, Any]] = []
        for event, record in fetched.parsed:
            if isinstance(event, EnvelopeError):
                await self._dead_letter(record, event, attempts=1)
            else:
                events.append((event, record))
        if events:
            await self._apply_with_retry(events)
        crash_point("batch_consumer.after_commit")
        try:
            await self._consumer.commit(fetched.offsets)
        except CommitFailedError as exc:
            # A rebalance took the partitions: their new owner reads the batch again and the
            # handler's deduplication makes that change nothing.
            self.commit_failures += 1
            log.warning("offset commit failed", extra={"fields": {"error": repr(exc)}})
        self.batches += 1

    async def _apply_with_retry(self, events: list[tuple[CloudEvent, Any]]) -> None:
        error = await self._attempt([e for e, _ in events])
        if error is None:
            return
        if not await self._database_up():
            # An outage is not the events' fault: nothing goes to the DLQ for it. The loop
            # rewinds to the committed offsets and tries again later.
            raise error
        if len(events) > 1:
            log.warning(
                "batch failed; applying its events one by one",
                extra={"fields": {"size": len(events), "error": repr(error)}},
            )
            for one in events:
                await self._apply_with_retry([one])
            return
        _, record = events[0]
        await self._dead_letter(record, error, attempts=self.max_attempts)

    async def _attempt(self, events: list[CloudEvent]) -> Exception | None:
        """Apply in one transaction, retrying with backoff; the last error when all fail."""
        error: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                async with self.db.unit_of_work() as uow:
                    await self.subscription.handle(events, uow)
                    crash_point("batch_consumer.before_commit")
                    await uow.commit()
                self.processed += len(events)
                return None
            except Exception as exc:
                error = exc
                log.warning(
                    "batch handling failed; will retry",
                    extra={"fields": {"attempt": attempt, "error": repr(exc)}},
                )
                if attempt < self.max_attempts:
                    await asyncio.sleep(min(0.05 * 2**attempt, 2.0))
        return error

    async def lag(self) -> int | None:
        """Records of the assigned partitions not yet committed; None before an assignment."""
        by_partition = await self.lag_by_partition()
        return sum(by_partition.values()) if by_partition else None

    async def lag_by_partition(self) -> dict[tuple[str, str, int], int]:
        """Per-partition lag for /metrics (`ServiceMetrics.lag_readers`)."""
        return await partition_lag(self._consumer, self.group_id)

    async def _database_up(self) -> bool:
        try:
            async with asyncio.timeout(5.0):
                return await self.db.ping()
        except Exception:
            return False

    async def _rewind(self) -> None:
        """Seek back to the committed offsets, so an unfinished batch is read again."""
        consumer = self._consumer
        if consumer is None:
            return
        with contextlib.suppress(Exception):
            for tp in consumer.assignment():
                committed = await consumer.committed(tp)
                if committed is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, committed)

    async def _dead_letter(self, record: Any, error: Exception, attempts: int) -> None:
        await dead_letter(self.producer, record, error, attempts=attempts, consumer=self.group_id)
        self.dead_lettered += 1
