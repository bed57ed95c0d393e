"""Wires terminal-gateway together. Its domain arrives with its own issue; until then it runs the
platform's shared parts: its database (kit migrations), outbox relay and heartbeat."""

from litestar import Litestar

from platformkit.definition import ServiceDefinition
from platformkit.http import build_service_app
from terminal_gateway import __version__

DEFINITION = ServiceDefinition(
    name="terminal-gateway",
    version=__version__,
    description="Workload access: browser terminal sessions relayed to node-agent PTYs.",
    route_handlers=[],
)


def build_app() -> Litestar:
    return build_service_app(DEFINITION)
