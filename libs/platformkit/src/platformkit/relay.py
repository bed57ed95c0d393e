"""The outbox relay: publishes committed outbox rows to Kafka, in order, then marks them sent.

Woken by LISTEN/NOTIFY on commit, with a slow poll as a fallback (a lost notification, a
relay started after the commit). Each batch runs under a transaction-scoped advisory lock,
so with several replicas one batch at a time is in flight and per-key order holds.
A crash after Kafka acknowledged a batch but before `sent_at` is written republishes it:
consumers deduplicate on the CloudEvents id (the outbox row id), so that costs nothing.
The runtime runs `run()` as a supervised job (platformkit.jobs): a failure ends the
session, the next one starts after a backoff. Sent rows are deleted later by the kit's
retention job (platformkit.retention), past the service's declared outbox retention.
The runtime's producer is a `kafka.RenewingProducer`: when aiokafka's producer breaks for
good (its sender task ended, e.g. OutOfOrderSequenceNumber after a broker restart) the
next batch goes through a fresh one, so the relay never stalls until a process restart.
"""

import asyncio
import logging
from typing import Any

import psycopg

from platformkit.db import libpq_url
from platformkit.envelope import CloudEvent
from platformkit.faults import crash_point
from platformkit.kafka import Producer

log = logging.getLogger(__name__)
_RELAY_LOCK = 7_300_002
_CLAIM = (
    "SELECT seq, id, topic, type, source, subject, tenant, traceparent, occurred_at, payload,"
    " actor, actor_kind, client_address FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT %s"
)


class OutboxRelay:
    def __init__(
        self,
        database_url: str,
        producer: Producer,
        *,
        batch_size: int = 1000,
        poll_interval_s: float = 2.0,
        delivery_timeout_s: float = 60.0,
    ) -> None:
        self.database_url = libpq_url(database_url)
        self.producer = producer
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.delivery_timeout_s = delivery_timeout_s
        self.published = 0

    async def run(self, _runtime: Any = None) -> None:
        """One connected session: publish until cancelled. A database or Kafka failure ends
        it; the runtime's supervisor (platformkit.jobs) starts the next one with backoff."""
        async with (
            await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as listen,
            await psycopg.AsyncConnection.connect(self.database_url) as work,
        ):
            await listen.execute("LISTEN outbox")
            while True:
                sent = await self.publish_batch(work)
                if sent >= self.batch_size:
                    continue
                # Wait for one commit notification (or the poll interval); the batch that
                # follows publishes every row committed so far, whatever woke us.
                async for _ in listen.notifies(timeout=self.poll_interval_s, stop_after=1):
                    pass

    async def publish_batch(self, conn: psycopg.AsyncConnection[Any]) -> int:
        async with conn.transaction():
            # Marking rows sent need not wait for the WAL flush: if the mark is lost in a
            # crash the rows are published again, and consumers deduplicate them.
            await conn.execute("SET LOCAL synchronous_commit = off")
            cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_RELAY_LOCK,))
            row = await cur.fetchone()
            if not row or not row[0]:
                return 0
            rows = await (await conn.execute(_CLAIM, (self.batch_size,))).fetchall()
            if not rows:
                return 0
            deliveries = []
            for row in rows:
                _seq, id_, topic, type_, source, subject, tenant, traceparent, at, payload = row[
                    :10
                ]
                actor, actor_kind, client_address = row[10:]
                event = CloudEvent(
                    id=id_,
                    type=type_,
                    source=source,
                    subject=subject,
                    time=at,
                    data=bytes(payload),
                    tenant=tenant,
                    traceparent=traceparent,
                    actor=actor,
                    actor_kind=actor_kind,
                    client_address=client_address,
                )
                deliveries.append(
                    await self.producer.send(
                        topic, value=event.data, key=event.key, headers=event.headers()
                    )
                )
            # Bounded: a batch Kafka never acknowledges ends the session (its transaction rolls
            # back, the rows stay unsent) instead of holding the relay's lock for ever.
            async with asyncio.timeout(self.delivery_timeout_s):
                await asyncio.gather(*deliveries)
            crash_point("relay.after_publish")
            await conn.execute(
                "UPDATE outbox SET sent_at = clock_timestamp() WHERE seq = ANY(%s)",
                ([r[0] for r in rows],),
            )
        self.published += len(rows)
        return len(rows)

    async def backlog(self) -> int:
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            cur = await conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            row = await cur.fetchone()
            return int(row[0]) if row else 0
