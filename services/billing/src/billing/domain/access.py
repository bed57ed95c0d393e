"""Who may read and move a tenant's money: billing's copy of the rows of iam's permission
table it enforces (docs/iam.md is the reference; iam's table is not imported).

- `billing.read`: balance, ledger, usage by project, monthly statements, payments and
  refunds: tenant roles owner, admin, billing;
- `billing.manage`: start a top-up (payment), refund one: tenant roles owner, billing.

Both are tenant-wide: no project role grants them, so a service account (one project role,
no tenant role) never reads or moves money. Grants, credits, prices, rerating and ledger
verification are the platform operator's. Refusals: another tenant -> 404 (ids cannot be
probed); a role of the caller's own tenant that does not allow the action -> 403.
"""

from __future__ import annotations

import enum


class Action(enum.StrEnum):
    BILLING_READ = "billing.read"
    BILLING_MANAGE = "billing.manage"


PERMISSIONS: dict[Action, frozenset[str]] = {
    Action.BILLING_READ: frozenset({"owner", "admin", "billing"}),
    Action.BILLING_MANAGE: frozenset({"owner", "billing"}),
}


def allows(action: Action, tenant_roles: frozenset[str]) -> bool:
    return bool(PERMISSIONS[action] & tenant_roles)
