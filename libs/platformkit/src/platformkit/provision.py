"""Prepare a Kafka cluster for the fleet: every contract topic (and its `.dlq`), then the ACL
table of every service principal.

    python -m platformkit.provision [--bootstrap HOST:PORT] [--replicas-override N] [--no-acls]

Runs as the admin principal, a super user of the brokers, from the GPUCLOUD_KAFKA_*
settings (platformkit.kafka.KafkaSettings.from_env): devstack runs it on `up`, Helm as a
pre-install/pre-upgrade Job, compose once before the services. Topics come from
gpucloud_contracts.provision, ACLs from gpucloud_contracts.acls (generated from
deploy/fleet.toml and the AsyncAPI documents); both are idempotent.

A broker without an authorizer (compose's PLAINTEXT one) answers SECURITY_DISABLED to the ACL
requests: with a PLAINTEXT connection the ACLs are then skipped and said so; with SASL it is
an error, since authenticated clients would be authorized for everything.
"""

import argparse
import asyncio
import dataclasses
import sys
import time
from collections.abc import Callable

from aiokafka.errors import KafkaError

from gpucloud_contracts.acls import SecurityDisabled, reconcile_acls
from gpucloud_contracts.provision import provision as provision_topics
from platformkit.kafka import KafkaSettings, Settings, admin_client, kafka_settings


async def provision(
    settings: Settings,
    *,
    replicas_override: int | None = None,
    acls: bool = True,
    report: Callable[[str], None] = print,
) -> None:
    kafka = kafka_settings(settings)
    admin = admin_client(kafka, "gpucloud-provision")
    await admin.start()
    try:
        started = time.monotonic()
        await provision_topics(admin, replicas_override, report=report)
        report(f"topics: {time.monotonic() - started:.2f}s")
        if not acls:
            return
        started = time.monotonic()
        try:
            changes = await reconcile_acls(admin)
        except SecurityDisabled:
            if kafka.sasl:
                raise
            report("acls: skipped, the broker runs no authorizer (PLAINTEXT)")
            return
        report(
            f"acls: {changes.created} created, {changes.deleted} deleted, {changes.kept} kept "
            f"({time.monotonic() - started:.2f}s)"
        )
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m platformkit.provision",
        description="Create the contract topics (and DLQs) and the fleet's ACLs, as the admin "
        "principal of GPUCLOUD_KAFKA_*.",
    )
    parser.add_argument(
        "--bootstrap", metavar="HOST:PORT", help="brokers (default: GPUCLOUD_KAFKA_BOOTSTRAP)"
    )
    parser.add_argument(
        "--replicas-override",
        type=int,
        metavar="N",
        help="replication factor for every topic instead of the declared one",
    )
    parser.add_argument("--no-acls", action="store_true", help="topics only")
    args = parser.parse_args(argv)
    if args.replicas_override is not None and args.replicas_override < 1:
        parser.error("--replicas-override must be at least 1")
    try:
        settings = KafkaSettings.from_env()
        if args.bootstrap:
            settings = dataclasses.replace(settings, bootstrap=args.bootstrap)
        asyncio.run(
            provision(settings, replicas_override=args.replicas_override, acls=not args.no_acls)
        )
    except (KafkaError, ValueError) as exc:
        print(f"provision: {exc!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
