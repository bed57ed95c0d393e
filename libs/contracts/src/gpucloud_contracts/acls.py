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

The table is a contract fact; `python -m platformkit.provision` makes a cluster's ACLs of
these principals exactly the table (platformkit.provision.reconcile_acls).

`publishers(topic)` answers which services may publish on a topic: consumers compare it with
the CloudEvents `source` of what they read (platformkit.envelope.verify_source).
"""

from __future__ import annotations

import argparse
import enum
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache

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


__all__ = ["Acl", "fleet_acls", "principal", "publishers", "service_acls", "table"]

if __name__ == "__main__":
    sys.exit(main())
