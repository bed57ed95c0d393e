"""Wires iam together: routes, migrations, consumers."""

from litestar import Litestar

from iam import __version__
from iam.api.routes import TenantController
from platformkit.http import ServiceDefinition, build_service_app

DEFINITION = ServiceDefinition(
    name="iam",
    version=__version__,
    description="Identity and access: tenants, projects, members, service accounts, tokens.",
    route_handlers=[TenantController],
    migrations="iam.store.migrations",
)


def build_app() -> Litestar:
    return build_service_app(DEFINITION)
