"""Who may do what in registry: registry's copy of its rows of the platform's permission
table (docs/iam.md is the reference; iam's own table lives in iam and is not imported).

Tenant roles hold in every project of the tenant; project roles (admin, member, viewer) only
in their project, which is how a CI service account (bound to one project, with a project
role) publishes and promotes the apps of its project. Keys and promotion policies belong to
the tenant: only tenant owners and admins manage them, with a recent second factor.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Action(enum.StrEnum):
    READ = "registry.read"  # apps, versions, bundles, blobs, keys, policies
    PUBLISH = "registry.publish"  # create apps, upload blobs, publish versions, attach statements
    PROMOTE = "registry.promote"  # promote and yank
    KEYS_MANAGE = "registry.keys.manage"  # trusted keys and promotion policies (step-up)
    CATALOG = "registry.catalog.read"  # the platform-public namespace: any valid caller
    WITNESS = "registry.witness.read"  # the audit checkpoints registry witnessed: any caller
    WITNESS_CONFLICTS = "registry.witness.conflicts"  # checkpoints it refused: operators


@dataclass(frozen=True)
class Rule:
    tenant: frozenset[str]
    project: frozenset[str] = frozenset()


def _rule(tenant: str, project: str = "") -> Rule:
    return Rule(frozenset(tenant.split()), frozenset(project.split()))


PERMISSIONS: dict[Action, Rule] = {
    Action.READ: _rule("owner admin member viewer", "admin member viewer"),
    Action.PUBLISH: _rule("owner admin member", "admin member"),
    Action.PROMOTE: _rule("owner admin", "admin"),
    Action.KEYS_MANAGE: _rule("owner admin"),
    Action.CATALOG: _rule("owner admin member viewer billing", "admin member viewer"),
    Action.WITNESS: _rule("owner admin member viewer billing", "admin member viewer"),
    Action.WITNESS_CONFLICTS: _rule(""),
}
STEP_UP = frozenset({Action.KEYS_MANAGE})


def allows(
    action: Action, tenant_roles: frozenset[str], project_roles: frozenset[str] = frozenset()
) -> bool:
    rule = PERMISSIONS[action]
    return bool(rule.tenant & tenant_roles) or bool(rule.project & project_roles)
