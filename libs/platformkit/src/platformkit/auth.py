"""Caller authorization for routes, until iam's signed tokens replace it.

Operator routes require `Authorization: Bearer <operator token>`, compared in constant
time with GPUCLOUD_OPERATOR_TOKEN. With no token configured every operator route is
refused: closed by default.
"""

import hmac

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from platformkit.errors import Forbidden, Unauthorized


def bearer_token(connection: ASGIConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require_operator(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    expected = connection.app.state.settings.operator_token
    token = bearer_token(connection)
    if token is None:
        raise Unauthorized("an operator bearer token is required")
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Forbidden("the bearer token is not an operator token")
