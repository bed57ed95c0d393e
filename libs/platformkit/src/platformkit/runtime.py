"""The running parts of a service besides its HTTP routes, started and stopped with the app.

`ServiceRuntime(definition, settings, state)` holds the database, the idempotent Kafka
producer and every supervised job (platformkit.jobs) of the service:

- the outbox relay (`platformkit.relay`);
- one `EventConsumer` per subscription and batch subscription (`platformkit.consumers`);
- for a service that verifies iam's tokens, the API-key revocation and membership
  projections (`TopicFeed`s fed by iam's topics);
- the retention job (`platformkit.retention`): inbox rows, idempotency keys and sent outbox
  rows older than the definition's `retention`, deleted every few minutes;
- the heartbeat (`platformkit.service.heartbeat` on `platform.heartbeat.v1`, direct, not
  through the outbox: telemetry, a newer one follows every few seconds);
- the service's own `jobs`.

`start()` connects the producer (retrying until Kafka answers) and starts a task per job;
`stop()` cancels them all, waits for them, then closes the producer and the database. A job
reaches shared resources through `runtime.database`, `runtime.settings` and
`runtime.state` (the app's state, where start-up hooks put providers and clients).
"""

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from gpucloud_contracts.catalog import topic_for
from gpucloud_contracts.events.platform import ServiceHeartbeat
from platformkit import kafka
from platformkit.consumers import EventConsumer, TopicFeed, dlq_topic
from platformkit.db import Database
from platformkit.definition import ServiceDefinition
from platformkit.envelope import new_event
from platformkit.jobs import Job, retrying, supervise
from platformkit.memberships import MembershipProjection
from platformkit.relay import OutboxRelay
from platformkit.retention import kafka_retention_from_env, purge_now
from platformkit.revocations import RevocationProjection
from platformkit.settings import ServiceSettings

log = logging.getLogger(__name__)
HEARTBEAT_TYPE = "platform.service.heartbeat"
# Long-running kit loops restart this soon after a failure, backing off to 5 s.
_RESTART_S, _RESTART_MAX_S = 0.2, 5.0


def kit_consumed_topics() -> set[str]:
    """The topics the kit itself reads for a token-verifying service (its feeds), which
    contracts/asyncapi/platform.yaml declares as receive operations (lint checks it)."""
    return {RevocationProjection.feed_topic(), MembershipProjection.feed_topic()}


@dataclasses.dataclass
class Readiness:
    checks: dict[str, bool]
    at: float

    @property
    def ready(self) -> bool:
        return all(self.checks.values())


class ServiceRuntime:
    def __init__(
        self, definition: ServiceDefinition, settings: ServiceSettings, state: Any = None
    ) -> None:
        self.definition = definition
        self.settings = settings
        self.state = state
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = dt.datetime.now(dt.UTC)
        self.db = Database(settings.database_url) if settings.database_url else None
        self.kafka = definition.kafka
        self.producer = kafka.renewing_producer(settings)
        self.relay = (
            OutboxRelay(
                settings.database_url,
                self.producer,
                poll_interval_s=settings.outbox_poll_interval_s,
            )
            if definition.relay and self.kafka and settings.database_url
            else None
        )
        self.consumers: list[EventConsumer] = []
        subscriptions = [*definition.subscriptions, *definition.batch_subscriptions]
        if subscriptions and self.kafka:
            if self.db is None:
                raise RuntimeError("event consumers need a database for their inbox")
            self.consumers = [
                EventConsumer(s, settings=settings, db=self.db, producer=self.producer)
                for s in subscriptions
            ]
        # A service that accepts iam's tokens also learns of revoked API keys (fleet-wide
        # revocation within seconds) and of the memberships iam changes, so a revoked role
        # stops counting before the tokens that carry it expire.
        verifies_tokens = self.kafka and bool(settings.jwks_url)
        self.revocations = RevocationProjection(settings) if verifies_tokens else None
        self.memberships = MembershipProjection(settings) if verifies_tokens else None
        if self.kafka and self.consumers:
            definition.retention.check(kafka_retention_from_env())
        self.jobs: list[Job] = [*self._kit_jobs(), *self._retention_jobs(), *definition.jobs]
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._readiness: Readiness | None = None
        self._offsets: AIOKafkaConsumer | None = None  # group-less, for /metrics only

    @property
    def database(self) -> Database:
        if self.db is None:
            raise RuntimeError(f"{self.settings.service_name} runs without a database")
        return self.db

    @property
    def feeds(self) -> list[TopicFeed]:
        return [f for f in (self.revocations, self.memberships) if f is not None]

    def _kit_jobs(self) -> list[Job]:
        if not self.kafka:
            return []

        def loop(name: str, run: Any) -> Job:
            return Job(name, _RESTART_S, run, immediate=True, max_backoff_s=_RESTART_MAX_S)

        jobs = []
        if self.relay is not None:
            jobs.append(loop("outbox-relay", self.relay.run))
        jobs += [loop(f"consumer:{c.group_id}", c.run) for c in self.consumers]
        jobs += [loop(feed.name, feed.run) for feed in self.feeds]
        # An interval of 0 turns heartbeats off (test harnesses).
        jobs.append(
            Job("heartbeat", self.settings.heartbeat_interval_s, self._beat, immediate=True)
        )
        return jobs

    def _retention_jobs(self) -> list[Job]:
        url, retention = self.settings.database_url, self.definition.retention
        if self.db is None or not url:
            return []
        return [Job("retention", retention.interval_s, lambda _rt: purge_now(url, retention))]

    def running_jobs(self) -> list[str]:
        return [name for name, task in self._tasks.items() if not task.done()]

    async def start(self) -> None:
        if self.kafka:
            async for attempt in retrying(
                first_wait_s=0.2, max_wait_s=5.0, what="kafka producer start"
            ):
                with attempt:
                    await self.producer.start()
        for job in self.jobs:
            if job.enabled:
                self._tasks[job.name] = asyncio.create_task(supervise(job, self), name=job.name)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.kafka:
            with contextlib.suppress(Exception):
                await self.producer.stop()
        if self._offsets is not None:
            with contextlib.suppress(Exception):
                await self._offsets.stop()
        if self.db is not None:
            await self.db.dispose()

    async def readiness(self, max_age_s: float = 1.0) -> Readiness:
        cached = self._readiness
        if cached is not None and time.monotonic() - cached.at < max_age_s:
            return cached
        checks: dict[str, bool] = {}
        if self.db is not None:
            checks["database"] = await _probe(self.db.ping())
        if self.kafka:
            checks["kafka"] = await _probe(self._kafka_ping())
        self._readiness = Readiness(checks, time.monotonic())
        return self._readiness

    async def dlq_depths(self, topics: Sequence[str]) -> dict[str, int]:
        """Records held by the `.dlq` twin of each topic (end minus beginning offsets)."""
        if not self.kafka:
            return {}
        if self._offsets is None:
            offsets = kafka.offsets_reader(
                self.settings, client_id=f"{self.settings.service_name}-metrics"
            )
            await offsets.start()
            self._offsets = offsets
        depths: dict[str, int] = {}
        cluster = await self.producer.client.fetch_all_metadata()
        for topic in topics:
            dlq = dlq_topic(topic)
            partitions = [TopicPartition(dlq, p) for p in cluster.partitions_for_topic(dlq) or ()]
            if partitions:
                ends = await self._offsets.end_offsets(partitions)
                starts = await self._offsets.beginning_offsets(partitions)
                depths[topic] = sum(ends[tp] - starts[tp] for tp in partitions)
        return depths

    async def _kafka_ping(self) -> bool:
        await self.producer.client.fetch_all_metadata()
        return True

    async def _beat(self, _runtime: Any = None) -> None:
        state = await self.readiness()
        beat = ServiceHeartbeat(
            service=self.settings.service_name,
            instance=self.instance,
            version=self.settings.version,
            git_sha=self.settings.git_sha,
            ready=state.ready,
            checks=state.checks,
            started_at=self.started_at,
            sent_at=dt.datetime.now(dt.UTC),
        )
        event = new_event(
            type=HEARTBEAT_TYPE,
            source=self.settings.service_name,
            subject=self.instance,
            payload=beat,
        )
        await self.producer.send(
            topic_for(HEARTBEAT_TYPE), value=event.data, key=event.key, headers=event.headers()
        )


async def _probe(check: Awaitable[bool]) -> bool:
    try:
        async with asyncio.timeout(2.0):
            return bool(await check)
    except Exception:
        return False
