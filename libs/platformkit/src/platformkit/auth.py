"""Who is calling, and may they touch this tenant and project?

Every route that is not public takes a `principal: Principal` dependency (provided by
`provide_principal`) and authorizes it locally against the tenant and project it touches:
no request path calls iam. Callers from another tenant get 404, not 403, so tenant ids
cannot be probed.

Credentials accepted today:
- the operator token (`GPUCLOUD_OPERATOR_TOKEN`, constant-time comparison) -> an operator
  principal that may act on any tenant;
- iam's signed access tokens, verified per RFC 8725 by `platformkit.tokens` once a service
  configures a verifier (`app.state.token_verifier`).
With no credential configured every non-public route refuses: closed by default.
"""

import dataclasses
import hmac
import uuid
from typing import Any, Literal, Protocol

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from platformkit.errors import Forbidden, NotFound, Unauthorized

TENANT_ROLES = ("owner", "admin", "member", "viewer", "billing")
PrincipalKind = Literal["user", "service_account", "operator"]


@dataclasses.dataclass(frozen=True)
class Principal:
    subject: str
    kind: PrincipalKind
    tenant_id: uuid.UUID | None = None
    roles: frozenset[str] = frozenset()
    # A service account is bound to one project; users reach projects through memberships.
    project_ids: frozenset[uuid.UUID] | None = None
    amr: tuple[str, ...] = ()
    auth_time: int | None = None

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"

    def require_tenant(self, tenant_id: uuid.UUID | str) -> None:
        """Refuse (as 404) a caller from another tenant."""
        if self.is_operator:
            return
        if self.tenant_id is None or str(self.tenant_id) != str(tenant_id):
            raise NotFound("no such resource")

    def require_role(self, *roles: str) -> None:
        if self.is_operator:
            return
        if not self.roles.intersection(roles):
            raise Forbidden(f"requires one of the roles: {', '.join(roles)}")

    def require_project(self, project_id: uuid.UUID | str) -> None:
        """Service accounts reach only their own project (others read as 404)."""
        if self.project_ids is not None and uuid.UUID(str(project_id)) not in self.project_ids:
            raise NotFound("no such resource")

    def require_operator(self) -> None:
        if not self.is_operator:
            raise Forbidden("operator only")


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Principal: ...


OPERATOR = Principal(subject="operator", kind="operator")


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _is_operator_token(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> bool:
    expected = connection.app.state.settings.operator_token
    return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())


async def provide_principal(request: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("a bearer token is required")
    if _is_operator_token(request, token):
        return OPERATOR
    verifier: TokenVerifier | None = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        raise Forbidden("the bearer token is not accepted here")
    return await verifier.verify(token)


def require_operator(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard for operator-only routes."""
    token = bearer_token(connection)
    if token is None:
        raise Unauthorized("an operator bearer token is required")
    if not _is_operator_token(connection, token):
        raise Forbidden("the bearer token is not an operator token")
