"""Wires gpuaas together. Its domain arrives with its own issue; until then it runs the
platform's shared parts: its database (kit migrations), outbox relay and heartbeat."""

from litestar import Litestar

from gpuaas import __version__
from platformkit.http import ServiceDefinition, build_service_app

DEFINITION = ServiceDefinition(
    name="gpuaas",
    version=__version__,
    description="GPU runtime: SKUs, MIG profiles, providers, nodes, allocations, quotas, metering.",
    route_handlers=[],
)


def build_app() -> Litestar:
    return build_service_app(DEFINITION)
