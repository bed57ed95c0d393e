"""Wires gpuaas together: routes, migrations, the balance, price, project, tenant and
launch-gate (registry releases and keys) projections, appplatform's replica commands, and
the jobs (the sweeper, the
node-sync wakeups listener)."""

from litestar import Litestar

from gpuaas import SERVICE, __version__
from gpuaas.api.routes import AllocationController, NodeController, SkuController
from gpuaas.app.balance import balance_handler
from gpuaas.app.launch_gate import registry_handler
from gpuaas.app.prices import price_handler
from gpuaas.app.projects import project_handler, tenant_handler
from gpuaas.app.providers import provider_from_env
from gpuaas.app.replicas import replica_handler
from gpuaas.app.sweeper import Sweeper
from gpuaas.app.wakeups import NodeWakeups
from gpuaas.settings import GpuaasSettings
from gpucloud_contracts.catalog import Topic
from platformkit.consumers import Subscription
from platformkit.definition import ServiceDefinition
from platformkit.http import build_service_app
from platformkit.jobs import Job
from platformkit.settings import TOKEN_SETTINGS

SETTINGS = GpuaasSettings.from_env()
# The wakeups listener reconnects after half a second, backing off to 10 s.
WAKEUPS_RECONNECT_S, WAKEUPS_MAX_BACKOFF_S = 0.5, 10.0


def start_gpuaas(app: Litestar) -> None:
    """What the routes and the jobs share: gpuaas's settings (tests replace them), the node
    provider, the sweeper and, when syncs are held, the wakeups listener."""
    state = app.state
    state.gpuaas_settings = SETTINGS
    db = state.runtime.db
    if db is None:
        return
    state.provider = provider_from_env(SETTINGS, state.settings.operator_token)
    state.sweeper = Sweeper(db, SETTINGS, state.provider)
    if SETTINGS.node_sync_hold_s > 0:
        state.node_wakeups = NodeWakeups(db.url)


def stop_gpuaas(app: Litestar) -> None:
    provider = getattr(app.state, "provider", None)
    if provider is not None:
        provider.close()


DEFINITION = ServiceDefinition(
    name=SERVICE,
    version=__version__,
    required_settings=TOKEN_SETTINGS,
    description="GPU runtime: SKUs, MIG profiles, providers, nodes, allocations, quotas, metering.",
    route_handlers=[AllocationController, SkuController, NodeController],
    migrations="gpuaas.store.migrations",
    subscriptions=[
        Subscription("balance-standing", (Topic.BILLING_BALANCE_V1,), balance_handler(SETTINGS)),
        Subscription("price-book", (Topic.BILLING_PRICE_V1,), price_handler()),
        Subscription("projects", (Topic.IAM_PROJECT_V1,), project_handler()),
        Subscription("tenants", (Topic.IAM_TENANT_V1,), tenant_handler()),
        Subscription(
            "launch-gate",
            (Topic.REGISTRY_RELEASE_V1, Topic.REGISTRY_KEY_V1),
            registry_handler(),
        ),
        # appplatform's controller: run or stop app replicas (one allocation per replica).
        Subscription("replicas", (Topic.APPPLATFORM_REPLICA_V1,), replica_handler(SETTINGS)),
    ],
    jobs=[
        Job(
            "sweeper",
            SETTINGS.sweep_interval_s,
            lambda rt: rt.state.sweeper.sweep(),
            immediate=True,
        ),
        Job(
            "node-wakeups",
            WAKEUPS_RECONNECT_S if SETTINGS.node_sync_hold_s > 0 else 0,
            lambda rt: rt.state.node_wakeups.listen(),
            immediate=True,
            max_backoff_s=WAKEUPS_MAX_BACKOFF_S,
        ),
    ],
    on_startup=[start_gpuaas],
    on_shutdown=[stop_gpuaas],
)


def build_app() -> Litestar:
    return build_service_app(DEFINITION)
