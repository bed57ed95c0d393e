"""Every Kafka client of the platform is made here, from the service's settings.

Connection and security options (bootstrap servers today; SASL/TLS when the fleet gets
per-service principals) live in `connection()` and nowhere else, so a client built by any
other means is a bug. The clients:

- `producer`: acks=all + idempotence, for the outbox relay, heartbeats and dead letters;
- `group_consumer`: a consumer group member with manual offset commits (every
  subscription of `platformkit.consumers`);
- `feed_consumer`: group-less, every partition from the beginning, nothing committed
  (the in-memory projections, `platformkit.consumers.TopicFeed`);
- `offsets_reader`: group-less and subscribed to nothing, for reading offsets (DLQ depth)
  and for assigning partitions by hand (DLQ replay);
- `admin_client`: topic administration (tests, provisioning tools).
"""

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from platformkit.settings import ServiceSettings


def connection(settings: ServiceSettings) -> dict[str, Any]:
    """The options every client of this service connects with."""
    return {"bootstrap_servers": settings.kafka_bootstrap}


def producer(settings: ServiceSettings, client_id: str | None = None) -> AIOKafkaProducer:
    """acks=all + idempotence: no loss on leader change, no duplicates from producer retries,
    and records of one partition stay in send order."""
    return AIOKafkaProducer(
        **connection(settings),
        client_id=client_id or settings.service_name,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        max_batch_size=256 * 1024,
        request_timeout_ms=15_000,
    )


def group_consumer(
    settings: ServiceSettings, topics: Any, *, group_id: str, client_id: str | None = None
) -> AIOKafkaConsumer:
    """A member of `group_id`; offsets are committed by the caller, after its database.
    Fetches are sized for batches of thousands of records (the rating consumer)."""
    return AIOKafkaConsumer(
        *topics,
        **connection(settings),
        group_id=group_id,
        client_id=client_id or group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )


def feed_consumer(settings: ServiceSettings, topic: str, client_id: str) -> AIOKafkaConsumer:
    """Every partition of `topic` from the beginning, no group, nothing committed."""
    return AIOKafkaConsumer(
        topic,
        **connection(settings),
        client_id=client_id,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        metadata_max_age_ms=30_000,  # pick up the topic's partitions soon after creation
        fetch_max_wait_ms=200,
    )


def offsets_reader(
    settings: ServiceSettings, client_id: str, *, group_id: str | None = None
) -> AIOKafkaConsumer:
    """Subscribed to nothing: partitions are assigned by hand or only their offsets read.
    With `group_id`, positions can be committed for that group (DLQ replay)."""
    return AIOKafkaConsumer(
        **connection(settings),
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


def admin_client(settings: ServiceSettings, client_id: str | None = None) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        **connection(settings), client_id=client_id or f"{settings.service_name}-admin"
    )
