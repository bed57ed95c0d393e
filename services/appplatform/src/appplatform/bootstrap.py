"""Wires appplatform together: routes, migrations, its projections of registry's releases
(the catalog), iam's projects and tenants and gpuaas's nodes, the observed state of its
replicas (gpuaas's allocation events) and the instance controller's loop."""

import httpx
from litestar import Litestar

from appplatform import __version__
from appplatform.api.connect import CONNECT_ROUTES
from appplatform.api.routes import ROUTES
from appplatform.app.controller import Controller
from appplatform.app.keys import KeyStore
from appplatform.app.observations import allocation_handler
from appplatform.app.projections import (
    node_handler,
    project_handler,
    release_handler,
    tenant_handler,
)
from appplatform.settings import AppSettings
from gpucloud_contracts.catalog import Topic
from platformkit.consumers import Subscription
from platformkit.definition import ServiceDefinition
from platformkit.http import build_service_app
from platformkit.jobs import Job
from platformkit.settings import TOKEN_SETTINGS, ServiceSettings

CONTROLLER = Controller()
# The controller's loop restarts this soon after it ends, backing off while it fails.
RESTART_S, MAX_BACKOFF_S = 0.5, 10.0


SETTINGS = AppSettings.from_env()


def install(app: Litestar) -> None:
    app.state.controller = CONTROLLER


async def open_connect(app: Litestar) -> None:
    """The app-proxy signing keys (created on first start) and the client to node agents."""
    settings: AppSettings = getattr(app.state, "app_settings", None) or SETTINGS
    keys = KeyStore(app.state.runtime.database, settings.key_passphrase)
    await keys.load()
    app.state.app_keys = keys
    app.state.agent_client = httpx.AsyncClient(
        timeout=httpx.Timeout(settings.agent_timeout_s, read=None), follow_redirects=False
    )


async def close_connect(app: Litestar) -> None:
    client = getattr(app.state, "agent_client", None)
    if client is not None:
        await client.aclose()


DEFINITION = ServiceDefinition(
    name="appplatform",
    version=__version__,
    # iam's tokens, and the passphrase sealing the app-proxy signing keys it stores
    required_settings=(*TOKEN_SETTINGS, "GPUCLOUD_APPS_KEY_PASSPHRASE"),
    description="App runtime: app manifests, the catalog of promoted apps, app instances a"
    " controller keeps running.",
    route_handlers=[*ROUTES, *CONNECT_ROUTES],
    migrations="appplatform.store.migrations",
    subscriptions=[
        Subscription("releases", (Topic.REGISTRY_RELEASE_V1,), release_handler()),
        Subscription("projects", (Topic.IAM_PROJECT_V1,), project_handler()),
        Subscription("tenants", (Topic.IAM_TENANT_V1,), tenant_handler()),
        Subscription("nodes", (Topic.GPUAAS_NODE_V1,), node_handler()),
        Subscription("allocations", (Topic.GPUAAS_ALLOCATION_V1,), allocation_handler()),
    ],
    jobs=[
        Job(
            "controller",
            RESTART_S,
            lambda rt: rt.state.controller.run(rt),
            immediate=True,
            max_backoff_s=MAX_BACKOFF_S,
        )
    ],
    on_startup=[install, open_connect],
    on_shutdown=[close_connect],
)


def build_app(settings: ServiceSettings | None = None) -> Litestar:
    return build_service_app(DEFINITION, settings)
