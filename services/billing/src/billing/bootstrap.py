"""Wires billing together. Its domain arrives with its own issue; until then it runs the
platform's shared parts: its database (kit migrations), outbox relay and heartbeat."""

from litestar import Litestar

from billing import __version__
from platformkit.http import ServiceDefinition, build_service_app

DEFINITION = ServiceDefinition(
    name="billing",
    version=__version__,
    description="Billing, metering, payments: price book, ledger, balances, statements.",
    route_handlers=[],
)


def build_app() -> Litestar:
    return build_service_app(DEFINITION)
