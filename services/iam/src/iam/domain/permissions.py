"""Who may do what: the one permission table of the platform (mirrored in docs/iam.md).

A caller's roles come from its access token: tenant-level roles hold in every project of
the tenant; project-level roles only in their project. An action is allowed when one of
the caller's tenant roles is in the action's `tenant` set, or, for an action on a project,
one of its roles in that project is in the action's `project` set. Operator-only actions
have empty sets. Other services import nothing from here: they carry their own copy of the
rows they need, and docs/iam.md is the reference.
"""

import enum
from dataclasses import dataclass

ROLES = ("owner", "admin", "member", "viewer", "billing")
# Roles that can be held in a single project (ownership and billing are tenant-wide).
PROJECT_ROLES = ("admin", "member", "viewer")


class Action(enum.StrEnum):
    AUTHENTICATED = "authenticated"  # any valid caller, about itself
    OPERATE = "platform.operate"  # the platform operator only
    TENANT_READ = "tenant.read"
    PROJECT_LIST = "project.list"
    PROJECT_CREATE = "project.create"
    PROJECT_READ = "project.read"
    MEMBER_READ = "member.read"
    MEMBER_MANAGE = "member.manage"
    POLICY_MANAGE = "tenant.policy.manage"
    PROJECT_MEMBER_READ = "project.member.read"
    PROJECT_MEMBER_MANAGE = "project.member.manage"
    SERVICE_ACCOUNT_READ = "service_account.read"
    SERVICE_ACCOUNT_MANAGE = "service_account.manage"
    BILLING_READ = "billing.read"
    BILLING_MANAGE = "billing.manage"
    WORKLOAD_READ = "workload.read"
    WORKLOAD_MANAGE = "workload.manage"


@dataclass(frozen=True)
class Rule:
    tenant: frozenset[str]
    project: frozenset[str] = frozenset()


def _rule(tenant: str, project: str = "") -> Rule:
    return Rule(frozenset(tenant.split()), frozenset(project.split()))


PERMISSIONS: dict[Action, Rule] = {
    Action.AUTHENTICATED: _rule("owner admin member viewer billing"),
    Action.OPERATE: _rule(""),
    Action.TENANT_READ: _rule("owner admin member viewer billing"),
    Action.PROJECT_LIST: _rule("owner admin member viewer billing"),
    Action.PROJECT_CREATE: _rule("owner admin"),
    Action.PROJECT_READ: _rule("owner admin member viewer", "admin member viewer"),
    Action.MEMBER_READ: _rule("owner admin"),
    Action.MEMBER_MANAGE: _rule("owner admin"),
    Action.POLICY_MANAGE: _rule("owner admin"),
    Action.PROJECT_MEMBER_READ: _rule("owner admin", "admin"),
    Action.PROJECT_MEMBER_MANAGE: _rule("owner admin", "admin"),
    Action.SERVICE_ACCOUNT_READ: _rule("owner admin member", "admin member"),
    Action.SERVICE_ACCOUNT_MANAGE: _rule("owner admin", "admin"),
    Action.BILLING_READ: _rule("owner admin billing"),
    Action.BILLING_MANAGE: _rule("owner billing"),
    Action.WORKLOAD_READ: _rule("owner admin member viewer", "admin member viewer"),
    Action.WORKLOAD_MANAGE: _rule("owner admin member", "admin member"),
}


def allows(
    action: Action,
    tenant_roles: frozenset[str],
    project_roles: frozenset[str] = frozenset(),
) -> bool:
    rule = PERMISSIONS[action]
    return bool(rule.tenant & tenant_roles) or bool(rule.project & project_roles)


def may_grant(granter_roles: frozenset[str], role: str) -> bool:
    """Only an owner makes (or unmakes) an owner; owners and admins grant the rest."""
    if role == "owner":
        return "owner" in granter_roles
    return bool({"owner", "admin"} & granter_roles)
