"""The running parts of a service besides its HTTP routes: database, Kafka producer,
outbox relay, event consumers, heartbeat and (for a service that verifies iam's tokens)
the API-key revocation and membership projections, started and stopped with the HTTP app.
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

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from gpucloud_contracts.events.platform import ServiceHeartbeat
from platformkit import kafka as kafka_clients
from platformkit.consumers import EventConsumer, Subscription, build_consumers, dlq_topic
from platformkit.db import Database
from platformkit.envelope import new_event
from platformkit.memberships import MembershipProjection
from platformkit.relay import OutboxRelay
from platformkit.revocations import RevocationProjection
from platformkit.settings import ServiceSettings

log = logging.getLogger(__name__)
HEARTBEAT_TOPIC = "platform.heartbeat.v1"
HEARTBEAT_TYPE = "platform.service.heartbeat"


@dataclasses.dataclass
class Readiness:
    checks: dict[str, bool]
    at: float

    @property
    def ready(self) -> bool:
        return all(self.checks.values())


class ServiceRuntime:
    def __init__(
        self,
        settings: ServiceSettings,
        *,
        subscriptions: Sequence[Subscription] = (),
        relay: bool = True,
        kafka: bool = True,
    ) -> None:
        self.settings = settings
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = dt.datetime.now(dt.UTC)
        self.db = Database(settings.database_url) if settings.database_url else None
        self.kafka = kafka
        self.producer = kafka_clients.idempotent_producer(settings, settings.service_name)
        self.broker = kafka_clients.broker(settings, settings.service_name)
        self.relay = (
            OutboxRelay(
                settings.database_url,
                self.producer,
                poll_interval_s=settings.outbox_poll_interval_s,
            )
            if relay and kafka and settings.database_url
            else None
        )
        self.consumers: list[EventConsumer] = []
        if subscriptions:
            if self.db is None:
                raise RuntimeError("event consumers need a database for their inbox")
            self.consumers = build_consumers(
                subscriptions,
                service=settings.service_name,
                db=self.db,
                producer=self.producer,
                max_attempts=settings.consumer_max_attempts,
            )
            for consumer in self.consumers:
                consumer.register(self.broker)
        # A service that accepts iam's tokens also learns of revoked API keys (fleet-wide
        # revocation within seconds); its token verifier consults this set.
        self.revocations = (
            RevocationProjection(settings.kafka, client_id=f"{settings.service_name}-revocations")
            if kafka and settings.jwks_url
            else None
        )
        # ... and of the memberships iam changes, so a revoked role stops counting before
        # the tokens that carry it expire (the verifier intersects the token's roles).
        self.memberships = (
            MembershipProjection(settings.kafka, client_id=f"{settings.service_name}-memberships")
            if kafka and settings.jwks_url
            else None
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._readiness: Readiness | None = None
        self._offsets: AIOKafkaConsumer | None = None  # group-less, for /metrics only

    async def start(self) -> None:
        if not self.kafka:
            return
        await self._start_producer()
        if self.relay is not None:
            self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
        if self.consumers:
            await self.broker.start()
        if self.revocations is not None:
            await self.revocations.start()
        if self.memberships is not None:
            await self.memberships.start()
        if self.settings.heartbeat_interval_s > 0:  # 0 turns heartbeats off (test harnesses)
            self._tasks.append(asyncio.create_task(self._heartbeat(), name="heartbeat"))

    async def _start_producer(self) -> None:
        # Kafka may come up after us (a restart of the broker, a fresh devstack): keep trying.
        delay = 0.2
        while True:
            try:
                await self.producer.start()
                return
            except Exception as exc:
                log.warning("kafka not reachable yet", extra={"fields": {"error": repr(exc)}})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.revocations is not None:
            await self.revocations.stop()
        if self.memberships is not None:
            await self.memberships.stop()
        with contextlib.suppress(Exception):
            await self.broker.stop()
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
            offsets = kafka_clients.consumer(
                self.settings,
                client_id=f"{self.settings.service_name}-metrics",
                enable_auto_commit=False,
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

    async def _heartbeat(self) -> None:
        while True:
            try:
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
                    payload=msgspec.json.encode(beat),
                )
                await self.producer.send(
                    HEARTBEAT_TOPIC, value=event.data, key=event.key, headers=event.headers()
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("heartbeat not sent", extra={"fields": {"error": repr(exc)}})
            await asyncio.sleep(self.settings.heartbeat_interval_s)


async def _probe(check: Awaitable[bool]) -> bool:
    try:
        async with asyncio.timeout(2.0):
            return bool(await check)
    except Exception:
        return False
