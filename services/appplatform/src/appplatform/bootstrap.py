"""Wires appplatform together. Its domain arrives with its own issue; until then it runs the
platform's shared parts: its database (kit migrations), outbox relay and heartbeat."""

from litestar import Litestar

from appplatform import __version__
from platformkit.definition import ServiceDefinition
from platformkit.http import build_service_app
from platformkit.settings import TOKEN_SETTINGS

DEFINITION = ServiceDefinition(
    name="appplatform",
    version=__version__,
    required_settings=TOKEN_SETTINGS,
    description="App runtime: app manifests, catalog, app instances, launch requests.",
    route_handlers=[],
)


def build_app() -> Litestar:
    return build_service_app(DEFINITION)
