"""Every Kafka client of the platform is made here, so the connection and its security
(SASL/SCRAM, TLS) are configured in one place; a client built by any other means is a bug.

`KafkaSettings` holds where the brokers are and who the client is: the bootstrap list, the
security protocol (PLAINTEXT, SASL_PLAINTEXT, SASL_SSL or SSL), the SASL mechanism
(SCRAM-SHA-512 by default), the principal's username and password, and a CA file for TLS.
It comes from the environment (GPUCLOUD_KAFKA_*) or is built directly (tests, tools). Each
factory takes those settings, or any object carrying them as `.kafka` (ServiceSettings), and
returns an unstarted client whose connection options come from `connection()`:

- `producer`: acks=all + idempotence, for the outbox relay, heartbeats and dead letters;
- `renewing_producer`: the same, wrapped in a `RenewingProducer` that replaces its aiokafka
  producer when that one can no longer deliver (the runtime's: relay, heartbeats, DLQ);
- `group_consumer`: a consumer group member with manual offset commits (every
  subscription of `platformkit.consumers`);
- `feed_consumer`: group-less, every partition from the beginning, nothing committed
  (the in-memory projections, `platformkit.consumers.TopicFeed`);
- `offsets_reader`: group-less and subscribed to nothing, for reading offsets (DLQ depth)
  and for assigning partitions by hand (DLQ replay);
- `admin_client`: topics and ACLs (platformkit.provision, tests);
- `consumer`: any other consumer (tests and tools that need options of their own).

The password is never part of `repr()`.
"""

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context

log = logging.getLogger(__name__)

DEFAULT_BOOTSTRAP = "127.0.0.1:19092"
PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str = DEFAULT_BOOTSTRAP
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # PEM bundle of the CA that signed the brokers' certificates (SSL, SASL_SSL); None: the
    # system's trust store.
    ssl_cafile: str | None = None

    def __post_init__(self) -> None:
        if self.security_protocol not in PROTOCOLS:
            raise ValueError(
                f"GPUCLOUD_KAFKA_SECURITY_PROTOCOL={self.security_protocol!r}: expected one of "
                f"{', '.join(PROTOCOLS)}"
            )
        if self.sasl and self.sasl_mechanism not in MECHANISMS:
            raise ValueError(
                f"GPUCLOUD_KAFKA_SASL_MECHANISM={self.sasl_mechanism!r}: expected one of "
                f"{', '.join(MECHANISMS)}"
            )
        if self.sasl and not (self.username and self.password):
            raise ValueError(
                f"Kafka {self.security_protocol} needs GPUCLOUD_KAFKA_SASL_USERNAME and "
                "GPUCLOUD_KAFKA_SASL_PASSWORD"
            )

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "KafkaSettings":
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(f"GPUCLOUD_KAFKA_{name}") or None

        return cls(
            bootstrap=get("BOOTSTRAP") or DEFAULT_BOOTSTRAP,
            security_protocol=(get("SECURITY_PROTOCOL") or "PLAINTEXT").upper(),
            sasl_mechanism=(get("SASL_MECHANISM") or "SCRAM-SHA-512").upper(),
            username=get("SASL_USERNAME"),
            password=get("SASL_PASSWORD"),
            ssl_cafile=get("SSL_CAFILE"),
        )

    def as_env(self) -> dict[str, str]:
        """The GPUCLOUD_KAFKA_* variables that `from_env` reads back (for child processes)."""
        env = {
            "GPUCLOUD_KAFKA_BOOTSTRAP": self.bootstrap,
            "GPUCLOUD_KAFKA_SECURITY_PROTOCOL": self.security_protocol,
        }
        if self.sasl:
            env["GPUCLOUD_KAFKA_SASL_MECHANISM"] = self.sasl_mechanism
            env["GPUCLOUD_KAFKA_SASL_USERNAME"] = self.username or ""
            env["GPUCLOUD_KAFKA_SASL_PASSWORD"] = self.password or ""
        if self.ssl_cafile:
            env["GPUCLOUD_KAFKA_SSL_CAFILE"] = self.ssl_cafile
        return env


class _HasKafka(Protocol):
    @property
    def kafka(self) -> KafkaSettings: ...


Settings = KafkaSettings | _HasKafka


def kafka_settings(settings: Settings) -> KafkaSettings:
    """The KafkaSettings themselves, or those a ServiceSettings carries."""
    return settings if isinstance(settings, KafkaSettings) else settings.kafka


def _client_id(settings: Settings, client_id: str | None, suffix: str = "") -> str:
    if client_id:
        return client_id
    name = getattr(settings, "service_name", None)
    if not name:
        raise TypeError("a client of bare KafkaSettings needs a client_id")
    return f"{name}{suffix}"


def connection(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments every client connects with: brokers, protocol, SASL, TLS."""
    kafka = kafka_settings(settings)
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.tls:
        options["ssl_context"] = _ssl_context(kafka)
    if kafka.sasl:
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.username
        options["sasl_plain_password"] = kafka.password
    return options


def _ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    return create_ssl_context(cafile=kafka.ssl_cafile) if kafka.tls else None


def producer(
    settings: Settings, client_id: str | None = None, **overrides: Any
) -> AIOKafkaProducer:
    """acks=all + idempotence: no loss on leader change, no duplicates from producer retries,
    and records of one partition stay in send order."""
    options: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 2,
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": 15_000,
        **overrides,
    }
    return AIOKafkaProducer(
        **connection(settings), client_id=_client_id(settings, client_id), **options
    )


def _fatal_delivery_errors() -> tuple[type[BaseException], ...]:
    """Broker answers after which an idempotent producer's sequence state is wrong for good:
    aiokafka keeps its sender alive but fails every later batch with the same error."""
    from aiokafka import errors

    names = ("OutOfOrderSequenceNumber", "UnknownProducerId", "InvalidProducerEpoch",
             "ProducerFenced", "InvalidProducerIdMapping")  # fmt: skip
    return tuple(getattr(errors, n) for n in names if hasattr(errors, n))


class RenewingProducer:
    """An idempotent producer that outlives a broken aiokafka producer.

    aiokafka's sender task ends for good on some broker answers (OutOfOrderSequenceNumber
    after a broker restart lost the producer's state, a fenced epoch, an unexpected error):
    from then on every send fails (or, for a batch already queued, never completes) until
    the process restarts (aio-libs/aiokafka#1017). Before each send this checks the sender
    task; when it has ended, the broken producer is stopped and a fresh one (a new producer
    id, sequence numbers from 0) takes its place. Records the broken one never delivered were
    failed to their senders, so nothing is silently lost: the outbox relay republishes its
    batch, and consumers deduplicate on the event id.

    The sender may also stay alive and fail every batch with the same answer (seen in CI's
    chaos run: OutOfOrderSequenceNumber on 36 relay attempts in a row after a Kafka
    restart): a delivery that fails with one of those fatal answers marks the producer
    broken too, so the next send renews it.
    """

    def __init__(self, factory: Callable[[], AIOKafkaProducer]) -> None:
        self._factory = factory
        self._current = factory()
        self._started = False  # start() was called and stop() was not
        self._current_started = False
        self._poisoned = False  # a delivery failed with a fatal answer (see the docstring)
        self._fatal = _fatal_delivery_errors()
        self.renewals = 0

    @property
    def current(self) -> AIOKafkaProducer:
        return self._current

    @property
    def client(self) -> Any:
        return self._current.client

    @property
    def broken(self) -> bool:
        """The sender task has ended: this producer will never deliver again."""
        if self._poisoned:
            return True
        task = _sender_task(self._current)
        return self._current_started and task is not None and task.done()

    async def start(self) -> None:
        self._started = True
        await self._start_current()

    async def stop(self) -> None:
        self._started = False
        if self._current_started:
            self._current_started = False
            await self._current.stop()

    async def renew(self) -> None:
        """Stop the current producer (bounded: a broken one may never flush) and start a
        fresh one in its place."""
        old, self._current = self._current, self._factory()
        was_started, self._current_started = self._current_started, False
        self._poisoned = False
        self.renewals += 1
        task = _sender_task(old)
        ended = task is not None and task.done() and not task.cancelled()
        error = task.exception() if task is not None and ended else None
        log.warning(
            "kafka producer broken; starting a fresh one",
            extra={"fields": {"error": repr(error), "renewals": self.renewals}},
        )
        if was_started:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.stop(), timeout=10)
        if self._started:
            await self._start_current()

    async def _start_current(self) -> None:
        try:
            await self._current.start()
        except BaseException:
            # A producer whose start failed is not started again: the next send gets a new one.
            failed, self._current = self._current, self._factory()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(failed.stop(), timeout=10)
            raise
        self._current_started = True

    async def send(self, topic: str, value: Any = None, key: Any = None, **options: Any) -> Any:
        if self.broken:
            await self.renew()
        elif self._started and not self._current_started:
            await self._start_current()
        producer = self._current
        delivery = await producer.send(topic, value=value, key=key, **options)

        def judge(done: asyncio.Future) -> None:
            if done.cancelled() or producer is not self._current:
                return
            if isinstance(done.exception(), self._fatal):
                self._poisoned = True

        delivery.add_done_callback(judge)
        return delivery

    async def send_and_wait(
        self, topic: str, value: Any = None, key: Any = None, **options: Any
    ) -> Any:
        return await (await self.send(topic, value=value, key=key, **options))


def _sender_task(producer: AIOKafkaProducer) -> "asyncio.Task[Any] | None":
    # aiokafka has no public "is this producer still able to deliver" API; its sender task
    # ending is that fact.
    return getattr(getattr(producer, "_sender", None), "sender_task", None)


Producer = AIOKafkaProducer | RenewingProducer


def renewing_producer(
    settings: Settings, client_id: str | None = None, **overrides: Any
) -> RenewingProducer:
    """`producer(...)`, renewed when it breaks (see RenewingProducer)."""
    return RenewingProducer(lambda: producer(settings, client_id, **overrides))


def consumer(settings: Settings, *topics: str, client_id: str, **options: Any) -> AIOKafkaConsumer:
    """An aiokafka consumer of `topics` (none: assign partitions yourself); the factories
    below are the platform's usual ones."""
    return AIOKafkaConsumer(*topics, **connection(settings), client_id=client_id, **options)


def group_consumer(
    settings: Settings, topics: Any, *, group_id: str, client_id: str | None = None
) -> AIOKafkaConsumer:
    """A member of `group_id`; offsets are committed by the caller, after its database.
    Fetches are sized for batches of thousands of records (the rating consumer)."""
    return consumer(
        settings,
        *topics,
        group_id=group_id,
        client_id=client_id or group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )


def feed_consumer(settings: Settings, topic: str, client_id: str) -> AIOKafkaConsumer:
    """Every partition of `topic` from the beginning, no group, nothing committed."""
    return consumer(
        settings,
        topic,
        client_id=client_id,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        metadata_max_age_ms=30_000,  # pick up the topic's partitions soon after creation
        fetch_max_wait_ms=200,
    )


def offsets_reader(
    settings: Settings, client_id: str, *, group_id: str | None = None
) -> AIOKafkaConsumer:
    """Subscribed to nothing: partitions are assigned by hand or only their offsets read.
    With `group_id`, positions can be committed for that group (DLQ replay)."""
    return consumer(
        settings,
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


def admin_client(settings: Settings, client_id: str | None = None) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        **connection(settings), client_id=_client_id(settings, client_id, "-admin")
    )
