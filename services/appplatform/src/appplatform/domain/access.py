"""Who may do what in appplatform: its copy of the rows of iam's permission table it
enforces (docs/iam.md is the reference; iam's table is not imported).

- `workload.read`: list and get a project's app instances, their logs, open their ports;
  tenant roles owner, admin, member, viewer; project roles admin, member, viewer;
- `workload.manage`: launch, change and stop instances; tenant roles owner, admin, member;
  project roles admin, member.

The catalog is readable by any signed-in caller (its tenant's apps and the public ones).
Tenant roles hold in every project of the tenant; project roles only in their project (a
service account holds exactly one project role, in its project). Refusals: another tenant,
another project, or no role reaching the project -> 404 (ids cannot be probed); a role in
the caller's own tenant or project that does not allow the action -> 403.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Action(enum.StrEnum):
    WORKLOAD_READ = "workload.read"
    WORKLOAD_MANAGE = "workload.manage"


@dataclass(frozen=True)
class Rule:
    tenant: frozenset[str]
    project: frozenset[str] = frozenset()


def _rule(tenant: str, project: str = "") -> Rule:
    return Rule(frozenset(tenant.split()), frozenset(project.split()))


PERMISSIONS: dict[Action, Rule] = {
    Action.WORKLOAD_READ: _rule("owner admin member viewer", "admin member viewer"),
    Action.WORKLOAD_MANAGE: _rule("owner admin member", "admin member"),
}


def allows(
    action: Action, tenant_roles: frozenset[str], project_roles: frozenset[str] = frozenset()
) -> bool:
    rule = PERMISSIONS[action]
    return bool(rule.tenant & tenant_roles) or bool(rule.project & project_roles)


def reaches(tenant_roles: frozenset[str], project_roles: frozenset[str]) -> bool:
    """Whether the caller holds any role in the project: without one, the project reads as
    another tenant's would (404)."""
    return bool(tenant_roles or project_roles)
