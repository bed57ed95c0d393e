"""Create the Kafka topics the contracts declare, idempotently.

`python -m platformkit.provision` runs it (with the ACLs of gpucloud_contracts.acls) on a
client built from the GPUCLOUD_KAFKA_* settings; here is only what is done with it.

Every topic of `catalog.TOPICS` is created with the partitions and replicas of its AsyncAPI
channel binding, and so is its dead-letter topic `<topic>.dlq` (same partitions). A topic
that exists is left alone, except that it grows to the declared partition count when it has
fewer (Kafka cannot shrink a topic, so more partitions than declared are only reported).
`--replicas-override` sets the replication factor of every topic (a one-broker dev cluster,
or a production cluster that wants more than the contract's default).

Hand-written; `provision()` is also called by the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from gpucloud_contracts.catalog import TOPICS

NO_ERROR = 0


def declared_topics(replicas_override: int | None = None) -> dict[str, tuple[int, int]]:
    """Topic name -> (partitions, replicas) for every contract topic and its DLQ."""
    topics: dict[str, tuple[int, int]] = {}
    for spec in TOPICS.values():
        replicas = replicas_override or spec.replicas
        topics[spec.name] = (spec.partitions, replicas)
        topics[spec.dlq] = (spec.partitions, replicas)
    return dict(sorted(topics.items()))


def _raise_errors(response: Any, ignore: tuple[type[KafkaError], ...] = ()) -> None:
    """Raise the first per-topic error of a CreateTopics response (aiokafka returns them)."""
    for error in response.topic_errors:
        topic, code = error[0], error[1]
        if code == NO_ERROR:
            continue
        exc_type = for_code(code)
        if not issubclass(exc_type, ignore):
            message = error[2] if len(error) > 2 and error[2] else exc_type.description
            raise exc_type(f"{topic}: {message}")


async def provision(
    admin: AIOKafkaAdminClient,
    replicas_override: int | None = None,
    report: Callable[[str], None] = print,
) -> None:
    """Create or grow every declared topic on the cluster `admin` (started) talks to."""
    wanted = declared_topics(replicas_override)
    existing = set(await admin.list_topics())
    missing = [name for name in wanted if name not in existing]
    if missing:
        new = [NewTopic(name, *wanted[name]) for name in missing]
        _raise_errors(await admin.create_topics(new), ignore=(TopicAlreadyExistsError,))
        for name in missing:
            partitions, replicas = wanted[name]
            report(f"created {name} ({partitions} partitions, {replicas} replicas)")

    present = [name for name in wanted if name in existing]
    current = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(present)}
    grow = {name: wanted[name][0] for name in present if current[name] < wanted[name][0]}
    if grow:
        await admin.create_partitions(  # raises on a per-topic error itself
            {name: NewPartitions(total_count=count) for name, count in grow.items()}
        )
    for name in present:
        partitions = wanted[name][0]
        if name in grow:
            report(f"grew {name} from {current[name]} to {partitions} partitions")
        elif current[name] > partitions:
            report(f"kept {name}: {current[name]} partitions (declared {partitions})")
        else:
            report(f"kept {name} ({partitions} partitions)")
