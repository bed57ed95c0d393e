"""Every Kafka client of the platform is built here, so the connection and its security
(SASL/SCRAM, TLS) are configured in one place.

`KafkaSettings` holds where the brokers are and who the client is: the bootstrap list, the
security protocol (PLAINTEXT, SASL_PLAINTEXT, SASL_SSL or SSL), the SASL mechanism
(SCRAM-SHA-512 by default), the principal's username and password, and a CA file for TLS.
It comes from the environment (GPUCLOUD_KAFKA_*) or is built directly (tests, tools). Each
factory takes those settings, or any object carrying them as `.kafka` (ServiceSettings), and
returns an unstarted client:

- `idempotent_producer`: acks=all + idempotence (the relay, heartbeats, dead letters);
- `consumer`: an aiokafka consumer (batch consumers, topic feeds, tools);
- `admin_client`: topic provisioning, ACLs;
- `broker`: the faststream KafkaBroker of the per-event consumers.

The password is never part of `repr()`.
"""

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

DEFAULT_BOOTSTRAP = "127.0.0.1:19092"
PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
_FASTSTREAM_SASL = {
    "SCRAM-SHA-512": SASLScram512,
    "SCRAM-SHA-256": SASLScram256,
    "PLAIN": SASLPlaintext,
}


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


def _ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    return create_ssl_context(cafile=kafka.ssl_cafile) if kafka.tls else None


def client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for the connection: brokers, protocol, SASL, TLS."""
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


def idempotent_producer(settings: Settings, client_id: str, **overrides: Any) -> AIOKafkaProducer:
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
    return AIOKafkaProducer(client_id=client_id, **client_options(settings), **options)


def consumer(settings: Settings, *topics: str, client_id: str, **options: Any) -> AIOKafkaConsumer:
    """An aiokafka consumer of `topics` (none: assign partitions yourself)."""
    return AIOKafkaConsumer(*topics, client_id=client_id, **client_options(settings), **options)


def admin_client(settings: Settings, client_id: str) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(client_id=client_id, **client_options(settings))


def faststream_security(settings: Settings) -> BaseSecurity | None:
    """The same connection security in faststream's terms (None for PLAINTEXT)."""
    kafka = kafka_settings(settings)
    if kafka.sasl:
        return _FASTSTREAM_SASL[kafka.sasl_mechanism](
            username=kafka.username or "",
            password=kafka.password or "",
            ssl_context=_ssl_context(kafka),
            use_ssl=kafka.tls,
        )
    if kafka.tls:
        return BaseSecurity(ssl_context=_ssl_context(kafka), use_ssl=True)
    return None


def broker(settings: Settings, client_id: str, **options: Any) -> KafkaBroker:
    """A faststream KafkaBroker (per-event consumers subscribe to it)."""
    kafka = kafka_settings(settings)
    return KafkaBroker(
        kafka.bootstrap,
        client_id=client_id,
        security=faststream_security(kafka),
        **{"logger": None, **options},
    )
