"""Wires audit together: routes, migrations, the log's batch consumer, checkpoint and
retention jobs, the status consumer."""

from litestar import Litestar
from litestar.di import Provide

from audit import __version__
from audit.api.routes import AuditController
from audit.app.handlers import record_heartbeat
from audit.app.log import AuditLog, LogConfig
from audit.app.retention import prune
from gpucloud_contracts.catalog import Topic
from platformkit.consumers import BatchSubscription, Subscription
from platformkit.definition import ServiceDefinition
from platformkit.http import build_service_app
from platformkit.jobs import Job
from platformkit.settings import TOKEN_SETTINGS

# Every topic carrying privileged actions (audit.domain.recording.RULES names the types).
RECORDED_TOPICS = (
    Topic.IAM_TENANT_V1,
    Topic.IAM_USER_V1,
    Topic.IAM_AUTH_V1,
    Topic.IAM_PROJECT_V1,
    Topic.IAM_MEMBERSHIP_V1,
    Topic.IAM_SERVICE_ACCOUNT_V1,
    Topic.IAM_SSH_KEY_V1,
    Topic.BILLING_PAYMENT_V1,
    Topic.BILLING_PRICE_V1,
    Topic.BILLING_LEDGER_V1,
    Topic.GPUAAS_ALLOCATION_V1,
    Topic.GPUAAS_NODE_V1,
    Topic.GPUAAS_QUOTA_V1,
    Topic.TERMINAL_SESSION_V1,
    Topic.TERMINAL_POLICY_V1,
    Topic.REGISTRY_RELEASE_V1,
    Topic.REGISTRY_KEY_V1,
    Topic.APPPLATFORM_INSTANCE_V1,
    Topic.AUDIT_EVIDENCE_V1,
)

LOG = AuditLog(LogConfig.from_env())

DEFINITION = ServiceDefinition(
    name="audit",
    version=__version__,
    # its checkpoint signing key is sealed at rest (app/log.py)
    required_settings=(*TOKEN_SETTINGS, "GPUCLOUD_AUDIT_KEY_PASSPHRASE"),
    description="Merkle audit log of every family's privileged actions with signed checkpoints"
    " and proofs; service status read model.",
    route_handlers=[AuditController],
    migrations="audit.store.migrations",
    dependencies={"audit_log": Provide(lambda: LOG, use_cache=True, sync_to_thread=False)},
    batch_subscriptions=[
        # One transaction per poll: the batch's leaves, tiles and tree head (and a
        # checkpoint every N records); replayed events append nothing (event ids are unique).
        BatchSubscription("log", RECORDED_TOPICS, LOG.append_events, max_records=5000),
    ],
    subscriptions=[
        # Heartbeats upsert "latest wins" and are idempotent by themselves: no inbox rows.
        Subscription(
            "service-status", (Topic.PLATFORM_HEARTBEAT_V1,), record_heartbeat, deduplicate=False
        ),
    ],
    jobs=[
        Job(
            "checkpoint",
            LOG.config.checkpoint_interval_s,
            lambda rt: LOG.checkpoint(rt.database),
            immediate=True,
        ),
        Job("retention", LOG.config.prune_interval_s, lambda rt: prune(rt.database)),
    ],
)


def build_app() -> Litestar:
    return build_service_app(DEFINITION)
