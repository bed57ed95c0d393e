"""Who may open a terminal, read recordings and set the policy: terminal-gateway's copy of
the rows of iam's permission table it enforces (docs/iam.md is the reference), and the
tenant's terminal policy.

- opening or reattaching a session: `workload.manage` in the allocation's project (tenant
  roles owner, admin, member; project roles admin, member), a user (a shell is bound to a
  person: service accounts and the operator token get 403);
- reading a tenant's sessions and recordings, killing a session: the tenant's owners and
  admins (and the operator);
- the terminal policy: read by owners and admins, changed by them with step-up.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping

WORKLOAD_MANAGE_TENANT = frozenset({"owner", "admin", "member"})
WORKLOAD_MANAGE_PROJECT = frozenset({"admin", "member"})
TENANT_ADMIN = frozenset({"owner", "admin"})
MIN_IDLE_TIMEOUT_S, MAX_IDLE_TIMEOUT_S = 60, 86_400


def may_open(
    tenant_roles: frozenset[str],
    project_roles: Mapping[uuid.UUID, frozenset[str]],
    project_id: uuid.UUID,
) -> bool:
    """`workload.manage` in the project: a tenant role or a role in that project."""
    in_project = project_roles.get(project_id, frozenset())
    return bool(tenant_roles & WORKLOAD_MANAGE_TENANT or in_project & WORKLOAD_MANAGE_PROJECT)


def is_tenant_admin(tenant_roles: frozenset[str]) -> bool:
    return bool(tenant_roles & TENANT_ADMIN)


@dataclasses.dataclass(frozen=True)
class TerminalPolicy:
    """A tenant's terminal policy (no row: the defaults)."""

    require_mfa: bool = False
    idle_timeout_s: int | None = None

    def idle_timeout(self, default_s: int) -> int:
        return self.idle_timeout_s if self.idle_timeout_s is not None else default_s
