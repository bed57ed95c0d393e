"""Who may do what in gpuaas: gpuaas's copy of the rows of iam's permission table it
enforces (docs/iam.md is the reference; iam's table is not imported).

- `workload.read`: list and get allocations, read a project's quota; tenant roles owner,
  admin, member, viewer; project roles admin, member, viewer;
- `workload.manage`: create and release allocations; tenant roles owner, admin, member;
  project roles admin, member.
- `launch-policy.manage`: set the channel launched bundles must be promoted to; tenant roles
  owner, admin; project role admin.

Tenant roles hold in every project of the tenant; project roles only in their project (a
service account holds exactly one project role, in its project). The operator token passes
every role check (never the project check: a project gpuaas does not know is 404 for it
too). Refusals: another tenant, another project (a project-bound caller, or a caller with
no role reaching the project) -> 404, so ids cannot be probed; a role in the caller's own
tenant or project that does not allow the action -> 403.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Action(enum.StrEnum):
    WORKLOAD_READ = "workload.read"
    WORKLOAD_MANAGE = "workload.manage"
    LAUNCH_POLICY_MANAGE = "launch-policy.manage"


@dataclass(frozen=True)
class Rule:
    tenant: frozenset[str]
    project: frozenset[str] = frozenset()


def _rule(tenant: str, project: str = "") -> Rule:
    return Rule(frozenset(tenant.split()), frozenset(project.split()))


PERMISSIONS: dict[Action, Rule] = {
    Action.WORKLOAD_READ: _rule("owner admin member viewer", "admin member viewer"),
    Action.WORKLOAD_MANAGE: _rule("owner admin member", "admin member"),
    Action.LAUNCH_POLICY_MANAGE: _rule("owner admin", "admin"),
}


def allows(
    action: Action, tenant_roles: frozenset[str], project_roles: frozenset[str] = frozenset()
) -> bool:
    rule = PERMISSIONS[action]
    return bool(rule.tenant & tenant_roles) or bool(rule.project & project_roles)


def reaches(tenant_roles: frozenset[str], project_roles: frozenset[str]) -> bool:
    """Whether the caller holds any role in the project (a tenant role, or one there):
    without one, the project reads as another tenant's would (404)."""
    return bool(tenant_roles or project_roles)
