"""Kafka clients with the settings the platform's guarantees depend on."""

from aiokafka import AIOKafkaProducer


def idempotent_producer(bootstrap: str, client_id: str) -> AIOKafkaProducer:
    """acks=all + idempotence: no loss on leader change, no duplicates from producer retries,
    and records of one partition stay in send order."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        max_batch_size=256 * 1024,
        request_timeout_ms=15_000,
    )
