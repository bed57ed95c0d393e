"""Wires the gateway: forwarding routes, an HTTP client, no database, no Kafka."""

import datetime as dt

import httpx
from litestar import Litestar

from gateway import __version__
from gateway.portal import cookie_free_jar, portal, portal_from_env
from gateway.routes import forward, forward_websocket, status
from gateway.upstreams import BodyLimits, upstreams_from_env
from platformkit.definition import ServiceDefinition
from platformkit.http import build_service_app


async def open_client(app: Litestar) -> None:
    app.state.upstreams = upstreams_from_env()
    app.state.body_limits = BodyLimits.from_env()
    app.state.portal = portal_from_env()
    app.state.started_at = dt.datetime.now(dt.UTC).isoformat()
    app.state.http = httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=3.0),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        cookies=cookie_free_jar(),
    )


DEFINITION = ServiceDefinition(
    name="gateway",
    version=__version__,
    # the services it forwards /v1/<route>/ to, and the portal it serves at /
    required_settings=("GPUCLOUD_UPSTREAMS", "GPUCLOUD_PORTAL_URL"),
    description="The edge: forwards /v1/<route>/... to the owning service; /v1/status.",
    route_handlers=[status, forward, forward_websocket, portal],
    kafka=False,
    relay=False,
    on_startup=[open_client],
)


def build_app() -> Litestar:
    return build_service_app(DEFINITION)
