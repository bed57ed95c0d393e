"""Wires appplatform together: routes, migrations, and its projections of registry's
releases (the catalog), iam's projects and tenants and gpuaas's nodes."""

from litestar import Litestar

from appplatform import __version__
from appplatform.api.routes import ROUTES
from appplatform.app.projections import (
    node_handler,
    project_handler,
    release_handler,
    tenant_handler,
)
from gpucloud_contracts.catalog import Topic
from platformkit.consumers import Subscription
from platformkit.definition import ServiceDefinition
from platformkit.http import build_service_app
from platformkit.settings import TOKEN_SETTINGS, ServiceSettings

DEFINITION = ServiceDefinition(
    name="appplatform",
    version=__version__,
    required_settings=TOKEN_SETTINGS,
    description="App runtime: app manifests, the catalog of promoted apps, app instances a"
    " controller keeps running.",
    route_handlers=ROUTES,
    migrations="appplatform.store.migrations",
    subscriptions=[
        Subscription("releases", (Topic.REGISTRY_RELEASE_V1,), release_handler()),
        Subscription("projects", (Topic.IAM_PROJECT_V1,), project_handler()),
        Subscription("tenants", (Topic.IAM_TENANT_V1,), tenant_handler()),
        Subscription("nodes", (Topic.GPUAAS_NODE_V1,), node_handler()),
    ],
)


def build_app(settings: ServiceSettings | None = None) -> Litestar:
    return build_service_app(DEFINITION, settings)
