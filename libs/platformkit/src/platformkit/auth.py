"""Who is calling, and may they touch this tenant and project?

Every route that is not public takes a `principal: Principal` dependency (provided by
`provide_principal`) and authorizes it locally against the tenant and project it touches:
no request path calls iam. Callers from another tenant get 404, not 403, so tenant ids
cannot be probed.

Credentials accepted today:
- the operator token (`GPUCLOUD_OPERATOR_TOKEN`, constant-time comparison) -> an operator
  principal that may act on any tenant;
- iam's signed access tokens, verified per RFC 8725 by `platformkit.tokens` once a service
  configures a verifier (`app.state.token_verifier`). A user's roles are those of the token
  that iam's membership events have not revoked since (`platformkit.memberships`, an
  in-process projection): authorization stays local and a revoked role stops counting
  within seconds.
With no credential configured every non-public route refuses: closed by default.

Roles hold at tenant level (`roles`, valid in every project of the tenant) or at project
level (`project_roles`). Step-up (RFC 9470): `require_recent_mfa` refuses a token whose
`amr` lacks a second factor within `max_age_s` with a 401 `insufficient_user_authentication`
challenge, which a client answers by signing in again with its second factor.
"""

import dataclasses
import hmac
import time
import uuid
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from platformkit.caller import note_principal
from platformkit.errors import Forbidden, NotFound, Unauthorized

PrincipalKind = Literal["user", "service_account", "operator"]

# amr values (RFC 8176) that count as a second factor.
MFA_METHODS = frozenset({"otp", "mfa", "hwk", "swk"})
STEP_UP_MAX_AGE_S = 900


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
    # Roles held in single projects, on top of the tenant-level `roles`.
    project_roles: Mapping[uuid.UUID, frozenset[str]] = dataclasses.field(
        default_factory=dict, hash=False
    )
    token_id: str | None = None
    # The API key a service account's token was minted from (fleet-wide revocation).
    api_key_id: str | None = None

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

    def roles_in_project(self, project_id: uuid.UUID | str) -> frozenset[str]:
        """Tenant-level roles apply in every project; project roles only in theirs."""
        return self.roles | self.project_roles.get(uuid.UUID(str(project_id)), frozenset())

    def require_project_role(self, project_id: uuid.UUID | str, *roles: str) -> None:
        """Refuse a caller without one of `roles` in the project (tenant roles count)."""
        if self.is_operator:
            return
        self.require_project(project_id)
        if not self.roles_in_project(project_id).intersection(roles):
            raise Forbidden(f"requires one of the roles: {', '.join(roles)}")

    def has_recent_mfa(self, max_age_s: int, now: float | None = None) -> bool:
        if not MFA_METHODS.intersection(self.amr) or self.auth_time is None:
            return False
        return (now if now is not None else time.time()) - self.auth_time <= max_age_s

    def require_recent_mfa(self, max_age_s: int = STEP_UP_MAX_AGE_S) -> None:
        """Step-up for privileged operations (RFC 9470). The operator token passes; a
        service account never has a second factor and is refused outright."""
        if self.is_operator:
            return
        if self.kind != "user":
            raise Forbidden("this operation needs a user with a recent second factor")
        if not self.has_recent_mfa(max_age_s):
            raise StepUpRequired(max_age_s)


class StepUpRequired(Unauthorized):
    """RFC 9470: the token is valid but its authentication is too weak or too old."""

    slug, title = "insufficient-user-authentication", "A recent second factor is required"

    def __init__(self, max_age_s: int = STEP_UP_MAX_AGE_S) -> None:
        super().__init__(
            f"sign in again with a second factor (within the last {max_age_s} s)",
            headers={
                "WWW-Authenticate": 'Bearer error="insufficient_user_authentication", '
                'error_description="A recent second factor is required", '
                f'acr_values="mfa", max_age={max_age_s}'
            },
        )


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
        note_principal(OPERATOR.subject, OPERATOR.kind)
        return OPERATOR
    verifier: TokenVerifier | None = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        raise Forbidden("the bearer token is not accepted here")
    principal = await verifier.verify(token)
    note_principal(principal.subject, principal.kind)
    return principal


def require_operator(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard for operator-only routes."""
    token = bearer_token(connection)
    if token is None:
        raise Unauthorized("an operator bearer token is required")
    if not _is_operator_token(connection, token):
        raise Forbidden("the bearer token is not an operator token")
    note_principal(OPERATOR.subject, OPERATOR.kind)
