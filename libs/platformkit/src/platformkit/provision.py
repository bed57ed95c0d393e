"""Create the Kafka topics the contracts declare, idempotently.

    python -m platformkit.provision [--bootstrap 127.0.0.1:19092] [--replicas-override N]

Every topic of `catalog.TOPICS` is created with the partitions and replicas of its AsyncAPI
channel binding, and so is its dead-letter topic `<topic>.dlq` (same partitions). A topic
that exists is left alone, except that it grows to the declared partition count when it has
fewer (Kafka cannot shrink a topic, so more partitions than declared are only reported).
`--replicas-override` sets the replication factor of every topic (a one-broker dev cluster,
or a production cluster that wants more than the contract's default).

`provision()` is also called by the local devstack and the tests. Its admin client comes
from `platformkit.kafka` like every other Kafka client (the connection settings of
GPUCLOUD_KAFKA_*; `--bootstrap` overrides the brokers).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Callable
from typing import Any

from aiokafka.admin import NewPartitions, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from gpucloud_contracts.catalog import TOPICS
from platformkit import kafka
from platformkit.settings import ServiceSettings

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


def settings_for(bootstrap: str | None = None) -> ServiceSettings:
    """The provisioning client's settings: GPUCLOUD_KAFKA_*, brokers overridden if given."""
    settings = ServiceSettings.from_env("gpucloud-provision")
    return dataclasses.replace(settings, kafka_bootstrap=bootstrap) if bootstrap else settings


async def provision(
    settings: ServiceSettings,
    replicas_override: int | None = None,
    report: Callable[[str], None] = print,
) -> None:
    """Create or grow every declared topic on the cluster `settings` connect to."""
    wanted = declared_topics(replicas_override)
    admin = kafka.admin_client(settings, client_id="gpucloud-provision")
    await admin.start()
    try:
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
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m platformkit.provision",
        description="Create the Kafka topics declared in contracts/asyncapi (and their DLQs).",
    )
    parser.add_argument(
        "--bootstrap", metavar="HOST:PORT", help="Kafka brokers (default GPUCLOUD_KAFKA_BOOTSTRAP)"
    )
    parser.add_argument(
        "--replicas-override",
        type=int,
        metavar="N",
        help="replication factor for every topic instead of the declared one",
    )
    args = parser.parse_args(argv)
    if args.replicas_override is not None and args.replicas_override < 1:
        parser.error("--replicas-override must be at least 1")
    try:
        asyncio.run(provision(settings_for(args.bootstrap), args.replicas_override))
    except KafkaError as exc:
        print(f"provision: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
