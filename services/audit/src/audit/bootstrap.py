"""Wires audit together: routes, migrations, consumers."""

from litestar import Litestar

from audit import __version__
from audit.api.routes import AuditController
from audit.app.handlers import record_heartbeat, record_privileged_event
from gpucloud_contracts.catalog import Topic
from platformkit.consumers import Subscription
from platformkit.definition import ServiceDefinition
from platformkit.http import build_service_app

PRIVILEGED_TOPICS = (Topic.IAM_TENANT_V1, Topic.IAM_MEMBERSHIP_V1, Topic.IAM_SERVICE_ACCOUNT_V1)

DEFINITION = ServiceDefinition(
    name="audit",
    version=__version__,
    description="Hash-chained audit log of privileged events; service status read model.",
    route_handlers=[AuditController],
    migrations="audit.store.migrations",
    subscriptions=[
        Subscription("privileged-events", PRIVILEGED_TOPICS, record_privileged_event),
        # Heartbeats upsert "latest wins" and are idempotent by themselves: no inbox rows.
        Subscription(
            "service-status", (Topic.PLATFORM_HEARTBEAT_V1,), record_heartbeat, deduplicate=False
        ),
    ],
)


def build_app() -> Litestar:
    return build_service_app(DEFINITION)
