"""The one authorization call of billing's tenant routes (the rows: domain/access.py)."""

import uuid

from billing.domain.access import Action, allows
from platformkit.auth import Principal
from platformkit.errors import Forbidden


def authorize(principal: Principal, action: Action, tenant_id: uuid.UUID) -> None:
    """404 for a caller of another tenant, 403 for a role that does not allow `action`
    (the operator passes)."""
    principal.require_tenant(tenant_id)
    if principal.is_operator:
        return
    if not allows(action, principal.roles):
        raise Forbidden(f"your role does not allow {action.value}")
