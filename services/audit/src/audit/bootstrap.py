"""Wires audit together: routes, migrations, consumers."""

from litestar import Litestar

from audit import __version__
from audit.api.routes import AuditController
from audit.app.handlers import record_heartbeat, record_privileged_event
from platformkit.consumers import Subscription
from platformkit.http import ServiceDefinition, build_service_app
from platformkit.runtime import HEARTBEAT_TOPIC

PRIVILEGED_TOPICS = (
    "iam.tenant.v1",
    "iam.membership.v1",
    "iam.service-account.v1",
    "iam.ssh-key.v1",
    "terminal.session.v1",
    "terminal.policy.v1",
)

DEFINITION = ServiceDefinition(
    name="audit",
    version=__version__,
    description="Hash-chained audit log of privileged events; service status read model.",
    route_handlers=[AuditController],
    migrations="audit.store.migrations",
    subscriptions=[
        Subscription("privileged-events", PRIVILEGED_TOPICS, record_privileged_event),
        # Heartbeats upsert "latest wins" and are idempotent by themselves: no inbox rows.
        Subscription("service-status", (HEARTBEAT_TOPIC,), record_heartbeat, deduplicate=False),
    ],
)


def build_app() -> Litestar:
    return build_service_app(DEFINITION)
