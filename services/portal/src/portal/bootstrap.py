"""Wires the portal: its pages, static assets, the session cookie, CSRF, an HTTP client to
the gateway; no database, no Kafka."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar, Response, get
from litestar.datastructures import State
from litestar.static_files import create_static_files_router

from platformkit.http import healthz, version
from platformkit.metrics import ServiceMetrics, metrics_middleware, metrics_route
from platformkit.telemetry import configure_tracing
from portal import __version__
from portal.settings import PortalSettings
from portal.views import accounts, apps, audit, auth, billing, gpus, operator, team, terminal
from portal.web import (
    EXCEPTION_HANDLERS,
    Refresher,
    add_security_headers,
    check_csrf,
    http_client,
    session_middleware,
)

STATIC = Path(__file__).parent / "static"
ROUTES = [
    *auth.ROUTES, *accounts.ROUTES, *gpus.ROUTES, *terminal.ROUTES, *billing.ROUTES, *team.ROUTES,
    *audit.ROUTES, *apps.ROUTES, *operator.ROUTES,
]  # fmt: skip


@get("/readyz", operation_id="readyz", include_in_schema=False)
async def readyz(state: State) -> Response[dict[str, Any]]:
    """Ready while the gateway answers: without it no page can be served."""
    cached = getattr(state, "gateway_check", None)
    if cached is None or time.monotonic() - cached[0] > 1.0:
        try:
            reply = await state.http.get("/healthz", timeout=2.0)
            reachable = reply.status_code == 200
        except httpx.HTTPError:
            reachable = False
        cached = (time.monotonic(), reachable)
        state.gateway_check = cached
    ready = cached[1]
    return Response(
        {"ready": ready, "checks": {"gateway": ready}}, status_code=200 if ready else 503
    )


def build_app(settings: PortalSettings | None = None) -> Litestar:
    settings = settings or PortalSettings.from_env(__version__)
    provider = configure_tracing(settings.service.service_name, settings.service.version)

    async def open_client(app: Litestar) -> None:
        app.state.http = http_client(settings)

    async def close_client(app: Litestar) -> None:
        await app.state.http.aclose()

    from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

    return Litestar(
        route_handlers=[
            healthz,
            readyz,
            version,
            metrics_route,
            create_static_files_router(
                path="/static",
                directories=[STATIC],
                name="static",
                include_in_schema=False,
                cache_control=None,
            ),
            *ROUTES,
        ],
        middleware=[metrics_middleware, session_middleware],
        before_request=check_csrf,
        after_request=add_security_headers,
        exception_handlers=EXCEPTION_HANDLERS,
        state=State(
            {
                "portal": settings,
                # platformkit's /metrics and /version read these two
                "settings": settings.service,
                "metrics": ServiceMetrics(settings.service.service_name),
                "refresher": Refresher(),
            }
        ),
        on_startup=[open_client],
        on_shutdown=[close_client],
        plugins=[OpenTelemetryPlugin(OpenTelemetryConfig(tracer_provider=provider))],
        openapi_config=None,
        request_max_body_size=65_536,
        logging_config=None,
        debug=False,
    )
