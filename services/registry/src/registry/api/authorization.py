"""How every registry route authorizes its caller: one guard, driven by registry's rows of
the permission table (domain/permissions.py, mirrored in docs/iam.md).

Each route declares `opt={"action": Action.X}` and `guards=[authorize]`; the guard runs
before the body is read. No token: 401. A token of another tenant, or a service account
outside the project in the path: 404 (ids cannot be probed). A role that does not allow the
action: 403. Key and policy changes then need a recent second factor (401 RFC 9470
challenge; service accounts: 403). The platform-public catalog is readable by any valid
token that acts in a tenant. The operator token passes every check (it also writes the
platform-public namespace, tenant and project 00000000-0000-0000-0000-000000000000).
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from platformkit.auth import Principal, provide_principal
from platformkit.errors import Forbidden, NotFound
from registry.domain.permissions import STEP_UP, Action, allows


async def authorize(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    action = handler.opt.get("action")
    if not isinstance(action, Action):
        raise Forbidden("this route declares no permission")  # closed by default
    principal = await provide_principal(connection)
    connection.state.principal = principal
    if principal.is_operator:
        return
    if action in (Action.CATALOG, Action.WITNESS):
        if principal.tenant_id is None:
            raise NotFound("no such resource")
        return
    tenant_id = connection.path_params.get("tenant_id")
    if tenant_id is None:
        raise Forbidden("this route is for the platform operator")
    principal.require_tenant(tenant_id)
    project_roles: frozenset[str] = frozenset()
    project_id = connection.path_params.get("project_id")
    if project_id is not None:
        principal.require_project(project_id)
        project_roles = principal.project_roles.get(uuid.UUID(str(project_id)), frozenset())
    if not allows(action, principal.roles, project_roles):
        raise Forbidden(f"your role does not allow {action.value}")
    if action in STEP_UP:
        principal.require_recent_mfa()


def guarded(action: Action) -> dict[str, Any]:
    return {"guards": [authorize], "opt": {"action": action}}


async def provide_authorized_principal(request: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    principal = getattr(request.state, "principal", None)
    return principal if principal is not None else await provide_principal(request)
