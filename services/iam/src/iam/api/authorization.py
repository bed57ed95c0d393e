"""How every iam route authorizes its caller: one guard, driven by the permission table.

Each non-public route declares `opt={"action": Action.X}` and `guards=[authorize]`. The
guard runs before the request body is read: it verifies the bearer token, scopes the
caller to the `tenant_id` (other tenants read as 404) and `project_id` in the path (a
service account of another project reads as 404), and checks the role against
`iam.domain.permissions`. Routes declared with `step_up=True` (issuing credentials,
changing roles, the MFA policy) then need a token whose `amr` shows a second factor used
within the last STEP_UP_MAX_AGE_S seconds, or answer 401 `insufficient_user_authentication`
(RFC 9470); a lower role still gets its 403 first. The route then receives the same
principal as `principal`. The isolation test reads `opt["action"]` of every route in the
OpenAPI document, so a new route without an action fails it.
"""

import uuid
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from iam.domain.mfa import STEP_UP_MAX_AGE_S
from iam.domain.permissions import Action, allows
from platformkit.auth import OPERATOR, Principal, provide_principal, require_operator
from platformkit.errors import Forbidden

PUBLIC = "public"


async def authorize(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    action = handler.opt.get("action")
    if not isinstance(action, Action):
        raise Forbidden("this route declares no permission")  # closed by default
    if action == Action.OPERATE:
        # The operator token's own guard: 401 without a token, 403 with another one.
        require_operator(connection, handler)
        connection.state.principal = OPERATOR
        return
    principal = await provide_principal(connection)
    connection.state.principal = principal
    if principal.is_operator or action == Action.AUTHENTICATED:
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
    if handler.opt.get("step_up"):
        # RFC 9470: a privileged operation needs a recent second factor (401 challenge).
        principal.require_recent_mfa(STEP_UP_MAX_AGE_S)


async def provide_authorized_principal(request: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The principal the guard verified (routes without the guard verify here)."""
    principal = getattr(request.state, "principal", None)
    return principal if principal is not None else await provide_principal(request)


def guarded(action: Action, *, step_up: bool = False) -> dict[str, Any]:
    """Keyword arguments for a route decorator: the guard and its declared action; with
    `step_up`, the caller also needs a second factor within STEP_UP_MAX_AGE_S."""
    return {"guards": [authorize], "opt": {"action": action, "step_up": step_up}}


def public() -> dict[str, Any]:
    return {"opt": {"action": PUBLIC}}
