"""Kafka consumers: one engine for every way a service reads a topic.

A service declares what it reads in its `ServiceDefinition`; the `ServiceRuntime` builds an
`EventConsumer` for each declaration and runs it as a supervised job (platformkit.jobs):

- `Subscription(consumer, topics, handle)`: `handle(event, uow)` for each event, with the
  inbox: `(consumer, event id)` is claimed in the same transaction as the effect, so a
  redelivered event is skipped (`deduplicate=False` for handlers idempotent by themselves);
- `BatchSubscription(consumer, topics, handle)`: `handle(events, uow)` once per batch (usage
  rating at thousands of events per second), deduplication being the handler's (a natural
  key of its own rows, e.g. a ledger transfer id derived from the event). With `prepare`
  (or a handler object with a `prepare(events)` method), `handle` receives
  `prepare(events)` instead: the pure part of the work (decoding payloads), done in the
  read-ahead while the previous batch is in the database.

The engine, the same for both:

1. a read-ahead task fetches the next batch (aiokafka `getmany`), parses its envelopes and
   runs the batch subscription's `prepare` while the current one is in the database (a
   queue of one), so that CPU work overlaps the wait for PostgreSQL (batch N+1 decoded
   while batch N commits); a record that is not a CloudEvent, or whose `source` may not
   publish on its topic (`envelope.verify_source`, the publishers of deploy/fleet.toml),
   goes to `<topic>.dlq` at once, never applied.
   `prepare` must be pure (no I/O, nothing it returns mutated by `handle`): it runs before
   the previous batch has committed, its result serves every retry of the batch, and a
   `prepare` that raises is simply run again inside the attempt, so a bad payload fails
   (and is isolated and dead-lettered) like any handler error;
2. the batch is applied in ONE unit of work and the database commits, THEN its offsets are
   committed, in the background while the next batch is applied (one commit in flight at a
   time, explicit offsets). A crash in between redelivers the batch, which changes nothing;
3. failures (one retry policy, `platformkit.jobs.retrying`): the batch is retried up to
   `max_attempts` times with backoff, then applied one event per transaction, so that only
   an event that fails on its own goes to `<topic>.dlq` (the error, attempts and original
   topic/partition/offset in its headers) and the consumer moves on. A database or network
   outage is not the events' fault: the batch waits until the database answers and is
   applied again, never dead-lettered;
4. a Kafka failure ends the session; the runtime starts a new one (backoff), which resumes
   from the committed offsets.

Named crash points (platformkit.faults): `consumer.before_commit` / `consumer.after_commit`
for subscriptions, `batch_consumer.before_commit` / `batch_consumer.after_commit` for batch
subscriptions ("after" = after the database commit, before the offset commit).

`TopicFeed` is the group-less variant for small in-memory projections every replica must
hold (revoked API keys, memberships): every partition from the beginning on each session,
nothing committed, no database; it reads with the same fetch, so a record from a source
that may not publish on the topic is skipped and counted (`refused`), never applied.

One transaction and one offset commit per poll (not per event) is what keeps
commit-to-consumer latency low under load (bench/outbox.py measures it).
"""

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import msgspec
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.types import Text

from gpucloud_contracts.catalog import topic_for
from platformkit import kafka
from platformkit.db import Database, UnitOfWork
from platformkit.envelope import CloudEvent, EnvelopeError, from_kafka, verify_source
from platformkit.faults import crash_point
from platformkit.jobs import retrying
from platformkit.settings import ServiceSettings
from platformkit.telemetry import continue_trace, current_event_id, current_tenant

log = logging.getLogger(__name__)

Handler = Callable[[CloudEvent, UnitOfWork], Awaitable[None]]
BatchHandler = Callable[[Any, UnitOfWork], Awaitable[None]]
Prepare = Callable[[Sequence[CloudEvent]], Any]
_NOT_PREPARED: Any = object()  # a batch whose `prepare` did not run (or raised) ahead

_CLAIM_INBOX = text(
    "INSERT INTO inbox (consumer, event_id, event_type)"
    " SELECT :consumer, id, type FROM unnest(:ids, :types) AS claimed(id, type)"
    " ON CONFLICT DO NOTHING RETURNING event_id"
).bindparams(
    bindparam("ids", type_=ARRAY(UUID(as_uuid=True))), bindparam("types", type_=ARRAY(Text))
)
_to = msgspec.convert


@dataclasses.dataclass(frozen=True)
class Subscription:
    """Per-event handling with the inbox. `consumer` names the consumer group (prefixed by
    the service) and its inbox rows."""

    consumer: str
    topics: Sequence[str]
    handle: Handler
    deduplicate: bool = True
    max_records: int = 500
    max_wait_ms: int = 100
    fault_prefix = "consumer"

    async def apply(
        self,
        uow: UnitOfWork,
        events: Sequence[tuple[str, CloudEvent]],
        prepared: Any = _NOT_PREPARED,
    ) -> int:
        """Apply the events not seen before; returns how many were applied."""
        fresh = await self._claim(uow, [event for _, event in events])
        applied = 0
        for topic, event in events:
            if event.id not in fresh:
                continue
            fresh.discard(event.id)  # the same event twice in one poll applies once
            tenant_token = current_tenant.set(event.tenant)
            event_token = current_event_id.set(str(event.id))
            try:
                with continue_trace(
                    f"consume {topic}", event.traceparent, **{"messaging.destination": topic}
                ):
                    await self.handle(event, uow)
            finally:
                current_tenant.reset(tenant_token)
                current_event_id.reset(event_token)
            applied += 1
        return applied

    async def _claim(self, uow: UnitOfWork, events: Sequence[CloudEvent]) -> set[Any]:
        if not self.deduplicate:
            return {event.id for event in events}
        result = await uow.session.execute(
            _CLAIM_INBOX,
            {
                "consumer": self.consumer,
                "ids": [e.id for e in events],
                "types": [e.type for e in events],
            },
        )
        return set(result.scalars().all())


@dataclasses.dataclass(frozen=True)
class BatchSubscription:
    """One handler call per batch; deduplication is the handler's. `consumer` names the
    consumer group (prefixed by the service). `prepare` (pure) turns the batch's events
    into what `handle` receives, ahead of time (see the module docstring); by default the
    handler's own `prepare` method when it has one, else `handle` gets the events."""

    consumer: str
    topics: Sequence[str]
    handle: BatchHandler
    max_records: int = 1000
    max_wait_ms: int = 100
    prepare: Prepare | None = None
    fault_prefix = "batch_consumer"

    def __post_init__(self) -> None:
        own = getattr(self.handle, "prepare", None)
        if self.prepare is None and callable(own):
            object.__setattr__(self, "prepare", own)

    def prepared(self, events: Sequence[CloudEvent]) -> Any:
        return self.prepare(events) if self.prepare is not None else list(events)

    async def apply(
        self,
        uow: UnitOfWork,
        events: Sequence[tuple[str, CloudEvent]],
        prepared: Any = _NOT_PREPARED,
    ) -> int:
        if prepared is _NOT_PREPARED:
            prepared = self.prepared([event for _, event in events])
        await self.handle(prepared, uow)
        return len(events)


AnySubscription = Subscription | BatchSubscription


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


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
        actor, actor_kind, client = get("ce_actor"), get("ce_actorkind"), get("ce_clientaddr")
        return CloudEvent(
            id=_to(attrs["ce_id"].decode(), uuid.UUID),
            type=attrs["ce_type"].decode(),
            source=attrs["ce_source"].decode(),
            subject=attrs["ce_subject"].decode(),
            time=dt.datetime.fromisoformat(attrs["ce_time"].decode()),
            data=value or b"",
            tenant=tenant.decode() if tenant is not None else None,
            traceparent=traceparent.decode() if traceparent is not None else None,
            actor=actor.decode() if actor is not None else None,
            actor_kind=actor_kind.decode() if actor_kind is not None else None,
            client_address=client.decode() if client is not None else None,
        )
    except Exception:
        return from_kafka(headers, value)


@dataclasses.dataclass(frozen=True)
class Fetched:
    """One poll: the records, each parsed and its source checked (or the reason it is no
    CloudEvent, or not believed), and the offsets to commit once it is applied."""

    records: list[Any]
    parsed: list[tuple[CloudEvent | EnvelopeError, Any]]
    offsets: dict[TopicPartition, int]
    prepared: Any = _NOT_PREPARED  # the batch subscription's prepare() of its CloudEvents


async def fetch(consumer: AIOKafkaConsumer, *, max_records: int, max_wait_ms: int) -> Fetched:
    by_partition = await consumer.getmany(timeout_ms=max_wait_ms, max_records=max_records)
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
    return Fetched(records, parsed, offsets)


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


async def dead_letter(
    producer: kafka.Producer, record: Any, error: Exception, *, attempts: int, consumer: str
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


class EventConsumer:
    """The engine for one subscription (either kind). `run()` is one session: the runtime
    supervises it as a job and starts another after a failure."""

    def __init__(
        self,
        subscription: AnySubscription,
        *,
        settings: ServiceSettings,
        db: Database,
        producer: kafka.Producer,
        max_attempts: int | None = None,
    ) -> None:
        self.subscription = subscription
        self.settings = settings
        self.db = db
        self.producer = producer
        self.max_attempts = max_attempts or settings.consumer_max_attempts
        self.processed = 0
        self.duplicates = 0
        self.dead_lettered = 0
        self.batches = 0
        self.commit_failures = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._pending_commit: asyncio.Future[None] | None = None

    @property
    def group_id(self) -> str:
        return f"{self.settings.service_name}.{self.subscription.consumer}"

    @property
    def assigned(self) -> bool:
        """The session's group member holds partitions (it joined and was assigned)."""
        return bool(self._consumer is not None and self._consumer.assignment())

    async def lag(self) -> int | None:
        """Records of the assigned partitions not yet committed; None before an assignment."""
        by_partition = await self.lag_by_partition()
        return sum(by_partition.values()) if by_partition else None

    async def lag_by_partition(self) -> dict[tuple[str, str, int], int]:
        """Per-partition lag (for /metrics)."""
        return await partition_lag(self._consumer, self.group_id)

    async def run(self, _runtime: Any = None) -> None:
        consumer = kafka.group_consumer(
            self.settings, self.subscription.topics, group_id=self.group_id
        )
        await consumer.start()
        self._consumer = consumer
        ahead: asyncio.Queue[Fetched | BaseException] = asyncio.Queue(maxsize=1)
        reader = asyncio.create_task(self._read_ahead(consumer, ahead), name="read-ahead")
        try:
            while True:
                fetched = await ahead.get()
                if isinstance(fetched, BaseException):
                    raise fetched
                await self._handle(consumer, fetched)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            if self._pending_commit is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._pending_commit, 5.0)
            self._consumer = None
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _read_ahead(
        self, consumer: AIOKafkaConsumer, ahead: "asyncio.Queue[Fetched | BaseException]"
    ) -> None:
        while True:
            try:
                fetched = await fetch(
                    consumer,
                    max_records=self.subscription.max_records,
                    max_wait_ms=self.subscription.max_wait_ms,
                )
            except Exception as exc:
                await ahead.put(exc)
                return
            if fetched.records:
                await ahead.put(self._prepare(fetched))

    def _prepare(self, fetched: Fetched) -> Fetched:
        """Run the batch subscription's prepare() on the poll's CloudEvents, here in the
        read-ahead; if it raises, the attempt runs it again (and fails like a handler)."""
        subscription = self.subscription
        if not isinstance(subscription, BatchSubscription) or subscription.prepare is None:
            return fetched
        events = [e for e, _ in fetched.parsed if not isinstance(e, EnvelopeError)]
        if not events:
            return fetched
        try:
            return dataclasses.replace(fetched, prepared=subscription.prepare(events))
        except Exception:
            return fetched

    async def _handle(self, consumer: AIOKafkaConsumer, fetched: Fetched) -> None:
        events: list[tuple[Any, CloudEvent]] = []
        for event, record in fetched.parsed:
            if isinstance(event, EnvelopeError):
                await self._dead_letter(record, event, attempts=1)
            else:
                events.append((record, event))
        if events:
            await self._apply_isolating(events, fetched.prepared)
        crash_point(f"{self.subscription.fault_prefix}.after_commit")
        await self._commit_offsets(consumer, fetched.offsets)
        self.batches += 1

    async def _apply_isolating(
        self, events: list[tuple[Any, CloudEvent]], prepared: Any = _NOT_PREPARED
    ) -> None:
        """Apply, retried; a batch that keeps failing is split so only the failing events
        go to the DLQ (each part prepared again)."""
        error = await self._attempt(events, prepared)
        if error is None:
            return
        if len(events) > 1:
            log.warning(
                "batch failed; applying its events one by one",
                extra={"fields": {"size": len(events), "error": repr(error)}},
            )
            for one in events:
                await self._apply_isolating([one])
            return
        await self._dead_letter(events[0][0], error, attempts=self.max_attempts)

    async def _attempt(
        self, events: list[tuple[Any, CloudEvent]], prepared: Any = _NOT_PREPARED
    ) -> Exception | None:
        """Apply in one transaction, retried up to max_attempts; the last error when every
        attempt failed. While the database is unreachable, wait for it without counting."""
        while True:
            try:
                async for attempt in retrying(
                    first_wait_s=0.1,
                    max_wait_s=2.0,
                    what=f"consumer {self.group_id}",
                    attempts=self.max_attempts,
                    retry_if=lambda exc: not is_transient(exc),
                ):
                    with attempt:
                        await self._apply(events, prepared)
                return None
            except Exception as exc:
                if not is_transient(exc) and await self._database_up():
                    return exc
                log.warning("consumer paused: infrastructure unavailable", exc_info=exc)
                await self._wait_for_database()

    async def _apply(
        self, events: list[tuple[Any, CloudEvent]], prepared: Any = _NOT_PREPARED
    ) -> None:
        async with self.db.unit_of_work() as uow:
            applied = await self.subscription.apply(
                uow, [(r.topic, e) for r, e in events], prepared
            )
            crash_point(f"{self.subscription.fault_prefix}.before_commit")
            await uow.commit()
        self.processed += applied
        self.duplicates += len(events) - applied

    async def _database_up(self) -> bool:
        try:
            async with asyncio.timeout(5.0):
                return await self.db.ping()
        except Exception:
            return False

    async def _wait_for_database(self) -> None:
        async for attempt in retrying(first_wait_s=1.0, max_wait_s=5.0, what="database ping"):
            with attempt:
                async with asyncio.timeout(5.0):
                    await self.db.ping()

    async def _commit_offsets(
        self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]
    ) -> None:
        """Commit this poll's offsets while the next poll is applied. One commit is in
        flight at a time, so they land in order; one that never lands (a crash, a
        rebalance) only redelivers events already applied."""
        if self._pending_commit is not None:
            await self._pending_commit
        self._pending_commit = asyncio.ensure_future(self._commit(consumer, offsets))

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
        except Exception as exc:
            self.commit_failures += 1
            log.warning("offset commit failed; events may be redelivered", exc_info=exc)

    async def _dead_letter(self, record: Any, error: Exception, attempts: int) -> None:
        await dead_letter(self.producer, record, error, attempts=attempts, consumer=self.group_id)
        self.dead_lettered += 1


class TopicFeed:
    """An in-memory projection of the topic `event_type` is published on. Subclasses set
    `name` and `event_type`, implement `apply(ce_type, value)` and may override
    `after_poll()`. Applying the same records in the same order lands on the same state, so
    the replay of each new session is harmless. `ready` turns true once a session has read
    up to the end offsets the topic had when it connected."""

    name = "feed"
    event_type = ""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.topic = self.feed_topic()
        self.client_id = f"{settings.service_name}-{self.name.replace(' ', '-')}"
        self.ready = False
        self.refused = 0  # records not applied: no CloudEvent, or a source not believed

    @classmethod
    def feed_topic(cls) -> str:
        return topic_for(cls.event_type)

    def apply(self, ce_type: str | None, value: bytes | None) -> None:
        raise NotImplementedError

    def after_poll(self) -> None:
        """Called after every poll (e.g. to prune expired entries)."""

    async def run(self, _runtime: Any = None) -> None:
        """One session: read from the beginning until cancelled or Kafka fails."""
        consumer = kafka.feed_consumer(self.settings, self.topic, self.client_id)
        await consumer.start()
        targets: dict[TopicPartition, int] | None = None
        try:
            while True:
                fetched = await fetch(consumer, max_records=1000, max_wait_ms=1000)
                for event, record in fetched.parsed:
                    if isinstance(event, EnvelopeError):
                        self.refused += 1
                        log.warning(
                            f"{self.name}: record not applied",
                            extra={
                                "fields": {
                                    "topic": record.topic,
                                    "offset": record.offset,
                                    "error": repr(event),
                                }
                            },
                        )
                        continue
                    self.apply(event.type, record.value)
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
