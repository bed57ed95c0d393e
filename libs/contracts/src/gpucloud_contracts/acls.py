"""The Kafka ACL table of the fleet, derived from `principals.SERVICES` (generated from
deploy/fleet.toml and the AsyncAPI documents), and its reconciliation on a cluster.

    python -m gpucloud_contracts.acls                 # the table (principal, operation, resource)
    python -m gpucloud_contracts.acls --markdown      # the same as a Markdown table

Each service authenticates as its own principal `User:<service>` and may:

- WRITE every topic of the families it owns (a PREFIXED ACL on `<family>.`), and the topics a
  shared family's document sends (`platform.heartbeat.v1`, LITERAL);
- READ each topic it consumes (LITERAL) and WRITE that topic's `.dlq` twin (its consumers
  dead-letter there);
- use the consumer groups named `<service>.<consumer>` (a PREFIXED READ ACL on `<service>.`).

Nothing else: no topic creation, no other group, no cluster operation. Topic provisioning,
ACLs and DLQ replay run as an admin principal the broker lists in `super.users`.

`reconcile_acls` makes a cluster's ACLs of these principals exactly the table (missing ones
created, stale ones deleted; other principals' ACLs untouched). aiokafka's admin client has
no ACL calls, so the CreateAcls/DescribeAcls/DeleteAcls requests of its protocol module are
sent directly.

`publishers(topic)` answers which services may publish on a topic: consumers compare it with
the CloudEvents `source` of what they read (platformkit.envelope.verify_source).
"""

from __future__ import annotations

import argparse
import enum
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from aiokafka.errors import SecurityDisabled, for_code
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest_v1,
    DescribeAclsRequest_v1,
)
from aiokafka.protocol.api import Request

from gpucloud_contracts.principals import SERVICES, ServiceAccess


class ResourceType(enum.IntEnum):  # Kafka protocol codes
    ANY = 1
    TOPIC = 2
    GROUP = 3


class PatternType(enum.IntEnum):
    ANY = 1
    LITERAL = 3
    PREFIXED = 4


class Operation(enum.IntEnum):
    ANY = 1
    READ = 3
    WRITE = 4


ALLOW = 3
ANY_PERMISSION = 1
ANY_HOST = "*"


@dataclass(frozen=True, order=True)
class Acl:
    principal: str
    operation: Operation
    resource: ResourceType
    pattern: PatternType
    name: str

    def row(self) -> tuple[str, str, str, str, str]:
        return (
            self.principal,
            self.operation.name,
            self.resource.name,
            self.pattern.name,
            self.name,
        )


def principal(service: str) -> str:
    return f"User:{service}"


def service_acls(access: ServiceAccess) -> list[Acl]:
    who = principal(access.service)
    owned = tuple(f"{family}." for family in access.families)
    acls = [Acl(who, Operation.WRITE, ResourceType.TOPIC, PatternType.PREFIXED, p) for p in owned]
    writes = set(access.writes) | {f"{topic}.dlq" for topic in access.reads}
    acls += [
        Acl(who, Operation.WRITE, ResourceType.TOPIC, PatternType.LITERAL, topic)
        for topic in writes
        if not topic.startswith(owned)
    ]
    acls += [
        Acl(who, Operation.READ, ResourceType.TOPIC, PatternType.LITERAL, t) for t in access.reads
    ]
    acls.append(
        Acl(who, Operation.READ, ResourceType.GROUP, PatternType.PREFIXED, f"{access.service}.")
    )
    return sorted(acls)


def fleet_acls(services: Mapping[str, ServiceAccess] = SERVICES) -> list[Acl]:
    """The whole table, sorted by principal."""
    return [acl for access in services.values() for acl in service_acls(access)]


@cache
def publishers(topic: str) -> frozenset[str] | None:
    """The services whose principal may write `topic`; None when no service owns it (a
    topic outside the contracts, e.g. a test's scratch topic)."""
    family = topic.split(".", 1)[0]
    names = frozenset(
        s.service for s in SERVICES.values() if family in s.families or topic in s.writes
    )
    return names or None


# --------------------------------------------------------------------------- on a cluster


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


@dataclass(frozen=True)
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


# --------------------------------------------------------------------------- printing

HEADER = ("PRINCIPAL", "OPERATION", "RESOURCE", "PATTERN", "NAME")


def table(acls: Iterable[Acl], markdown: bool = False) -> str:
    rows = [HEADER, *(acl.row() for acl in acls)]
    if markdown:
        lines = [f"| {' | '.join(rows[0])} |", f"|{'---|' * len(HEADER)}"]
        lines += [
            f"| {' | '.join(f'`{c}`' if i == 4 else c for i, c in enumerate(r))} |"
            for r in rows[1:]
        ]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gpucloud_contracts.acls",
        description="Print the Kafka ACL table generated from deploy/fleet.toml and the contracts.",
    )
    parser.add_argument("--markdown", action="store_true", help="as a Markdown table")
    args = parser.parse_args(argv)
    print(table(fleet_acls(), markdown=args.markdown))
    print(
        "\nSuper users (broker super.users, not in the table): the admin principal (topic "
        "provisioning, ACLs, DLQ replay) and the broker's own.",
    )
    return 0


__all__ = [
    "Acl",
    "AclChanges",
    "Entry",
    "SecurityDisabled",
    "create_acls",
    "delete_acls",
    "describe_acls",
    "entry",
    "fleet_acls",
    "publishers",
    "reconcile_acls",
    "service_acls",
    "table",
]

if __name__ == "__main__":
    sys.exit(main())
