"""Wires registry together. Its domain arrives with its own issue; until then it runs the
platform's shared parts: its database (kit migrations), outbox relay and heartbeat."""

from litestar import Litestar

from platformkit.definition import ServiceDefinition
from platformkit.http import build_service_app
from registry import __version__

DEFINITION = ServiceDefinition(
    name="registry",
    version=__version__,
    description="Registry and trust: apps, versions, artifacts, signatures, promotions.",
    route_handlers=[],
)


def build_app() -> Litestar:
    return build_service_app(DEFINITION)
