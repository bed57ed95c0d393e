"""Wires the node agent. No database, no Kafka: it talks to gpuaas over HTTP only."""

from litestar import Litestar

from node_agent import __version__
from platformkit.http import ServiceDefinition, build_service_app

DEFINITION = ServiceDefinition(
    name="gpuaas-node-agent",
    version=__version__,
    description="GPU node agent: discovery, reconciliation, PTY stream (placeholder).",
    route_handlers=[],
    kafka=False,
    relay=False,
)


def build_app() -> Litestar:
    return build_service_app(DEFINITION)
