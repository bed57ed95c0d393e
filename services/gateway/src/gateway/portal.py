"""The console at `/`: every path outside `/v1/` (and the gateway's own health, version and
metrics routes) goes to the portal (GPUCLOUD_PORTAL_URL). Kept apart from the API
forwarding in routes.py: the portal is a client of the API like any other, reached through
this same edge so the browser sees one origin."""

import os
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

from litestar import Request, Response, route
from litestar.datastructures import State
from litestar.response import Stream

from gateway.routes import METHODS, proxy
from platformkit.errors import NotFound

PORTAL_ENV = "GPUCLOUD_PORTAL_URL"


def cookie_free_jar() -> CookieJar:
    """A jar that keeps nothing. The gateway's one HTTP client serves every caller: a
    cookie it kept from one browser's answer (the portal's session) would go out with the
    next caller's request."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def portal_from_env() -> str | None:
    url = os.environ.get(PORTAL_ENV, "").strip().rstrip("/")
    if url and not url.startswith(("http://", "https://")):
        raise ValueError(f"{PORTAL_ENV}={url!r} is not an http(s) URL")
    return url or None


@route(
    ["/", "/{path:path}"],
    http_method=[*METHODS, "HEAD"],
    operation_id="portal",
    include_in_schema=False,
)
async def portal(request: Request[Any, Any, Any], state: State) -> Response[bytes] | Stream:
    upstream = getattr(state, "portal", None)
    if upstream is None or request.url.path.startswith("/v1/"):
        raise NotFound(f"nothing is served at {request.url.path}")
    # The portal sets one cookie per answer (its sealed session), so a plain mapping of
    # headers keeps it intact.
    return await proxy(state, upstream, request)
