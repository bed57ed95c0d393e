"""Prepare a Kafka cluster for the fleet: every contract topic (and its `.dlq`), then the ACL
table of every service principal. The one module that changes a cluster's topics and ACLs.

    python -m platformkit.provision [--bootstrap HOST:PORT] [--replicas-override N] [--no-acls]

Runs as the admin principal, a super user of the brokers, from the GPUCLOUD_KAFKA_*
settings (platformkit.kafka.KafkaSettings.from_env; `--bootstrap` overrides the brokers):
devstack runs it on `up`, Helm as a pre-install/pre-upgrade Job, compose once before the
services. Its admin client comes from `platformkit.kafka` like every other Kafka client.
Both steps are idempotent.

Topics: every topic of `catalog.TOPICS` is created with the partitions and replicas of its
AsyncAPI channel binding, and so is its dead-letter topic `<topic>.dlq` (same partitions). A
topic that exists is left alone, except that it grows to the declared partition count when
it has fewer (Kafka cannot shrink a topic, so more partitions than declared are only
reported). `--replicas-override` sets the replication factor of every topic (a one-broker
dev cluster, or a production cluster that wants more than the contract's default).

ACLs: the table is a contract fact (gpucloud_contracts.acls, from deploy/fleet.toml and the
AsyncAPI documents); `reconcile_acls` makes the cluster's ACLs of the fleet's principals
exactly that table (missing ones created, stale ones deleted; other principals' ACLs
untouched). aiokafka's admin client has no ACL calls, so the CreateAcls/DescribeAcls/
DeleteAcls requests of its protocol module are sent directly. A broker without an authorizer
(compose's PLAINTEXT one) answers SECURITY_DISABLED: with a PLAINTEXT connection the ACLs
are then skipped and said so; with SASL it is an error, since authenticated clients would be
authorized for everything.

The principals' SCRAM credentials are not made here: a client must already authenticate to
send any request, so the brokers get them when their storage is formatted (devstack's
`kafka-storage format --add-scram`) or from the cluster's operator (Helm, docs/operations.md).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import KafkaError, SecurityDisabled, TopicAlreadyExistsError, for_code
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest_v1,
    DescribeAclsRequest_v1,
)
from aiokafka.protocol.api import Request

from gpucloud_contracts.acls import (
    ALLOW,
    ANY_HOST,
    ANY_PERMISSION,
    Acl,
    Operation,
    PatternType,
    ResourceType,
    fleet_acls,
    principal,
)
from gpucloud_contracts.catalog import TOPICS
from gpucloud_contracts.principals import SERVICES, ServiceAccess
from platformkit import kafka

NO_ERROR = 0

# --------------------------------------------------------------------------- topics


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


async def provision_topics(
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


# --------------------------------------------------------------------------- ACLs

# (resource type, name, pattern type, principal, host, operation, permission): an ACL as the
# protocol carries it.
Entry = tuple[int, str, int, str, str, int, int]


def entry(acl: Acl) -> Entry:
    return (acl.resource, acl.name, acl.pattern, acl.principal, ANY_HOST, acl.operation, ALLOW)


class _CreateAcls(Request[CreateAclsRequest_v1]):
    API_KEY = 30

    def __init__(self, entries: Iterable[Entry]) -> None:
        self.entries = list(entries)

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(self.entries)


class _DeleteAcls(Request[DeleteAclsRequest_v1]):
    """Filters matching exactly one ACL each."""

    API_KEY = 31

    def __init__(self, entries: Iterable[Entry]) -> None:
        self.entries = list(entries)

    def build(self, request_struct_class: type[DeleteAclsRequest_v1]) -> DeleteAclsRequest_v1:
        return request_struct_class(self.entries)


class _DescribeAllAcls(Request[DescribeAclsRequest_v1]):
    API_KEY = 29

    def build(self, request_struct_class: type[DescribeAclsRequest_v1]) -> DescribeAclsRequest_v1:
        return request_struct_class(
            ResourceType.ANY, None, PatternType.ANY, None, None, Operation.ANY, ANY_PERMISSION
        )


def _raise(code: int, message: str | None, what: str) -> None:
    if code:
        error = for_code(code)
        raise error(f"{what}: {message or error.description}")


async def describe_acls(admin: Any) -> set[Entry]:
    """Every ACL the cluster holds. Raises SecurityDisabled when the broker runs no
    authorizer."""
    response = await admin._send_request(_DescribeAllAcls())
    _raise(response.error_code, response.error_message, "DescribeAcls")
    return {
        (resource_type, name, pattern, who, host, operation, permission)
        for resource_type, name, pattern, entries in response.resources
        for who, host, operation, permission in entries
    }


@dataclasses.dataclass(frozen=True)
class AclChanges:
    created: int
    deleted: int
    kept: int


async def reconcile_acls(
    admin: Any, services: Mapping[str, ServiceAccess] = SERVICES
) -> AclChanges:
    """Make the ACLs of the fleet's principals exactly the table, on the cluster `admin`
    (a started aiokafka admin client of a super user) talks to: missing ones are created,
    any other ACL of those principals (a consumer that went away, a hand-made grant) is
    deleted; other principals' ACLs are left alone."""
    wanted = {entry(acl) for acl in fleet_acls(services)}
    ours = {principal(name) for name in services}
    existing = {e for e in await describe_acls(admin) if e[3] in ours}
    create, delete = sorted(wanted - existing), sorted(existing - wanted)
    await create_acls(admin, create)
    await delete_acls(admin, delete)
    return AclChanges(len(create), len(delete), len(wanted & existing))


async def create_acls(admin: Any, entries: Sequence[Entry]) -> None:
    if not entries:
        return
    response = await admin._send_request(_CreateAcls(entries))
    for (code, message), made in zip(response.creation_responses, entries, strict=True):
        _raise(code, message, f"CreateAcls {made}")


async def delete_acls(admin: Any, entries: Sequence[Entry]) -> None:
    if not entries:
        return
    response = await admin._send_request(_DeleteAcls(entries))
    for code, message, _matching in response.filter_responses:
        _raise(code, message, "DeleteAcls")


# --------------------------------------------------------------------------- both


async def provision(
    settings: kafka.Settings,
    *,
    replicas_override: int | None = None,
    acls: bool = True,
    report: Callable[[str], None] = print,
) -> None:
    """Topics, then (unless `acls=False`) the ACL table, as the principal of `settings`."""
    connection = kafka.kafka_settings(settings)
    admin = kafka.admin_client(connection, "gpucloud-provision")
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
            if connection.sasl:
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
        settings = kafka.KafkaSettings.from_env()
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
