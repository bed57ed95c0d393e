"""Wires gpuaas together: routes, migrations, the balance consumer and the sweeper."""

import asyncio
import contextlib

from litestar import Litestar

from gpuaas import __version__
from gpuaas.api.routes import AllocationController, NodeController, SkuController
from gpuaas.app.balance import BALANCE_TOPIC, balance_handler
from gpuaas.app.prices import PRICE_TOPIC, price_handler
from gpuaas.app.providers import provider_from_env
from gpuaas.app.sweeper import sweep_forever
from gpuaas.app.wakeups import NodeWakeups
from gpuaas.settings import GpuaasSettings
from platformkit.consumers import Subscription
from platformkit.http import ServiceDefinition, build_service_app

SETTINGS = GpuaasSettings.from_env()


async def start_sweeper(app: Litestar) -> None:
    app.state.gpuaas_settings = SETTINGS
    runtime = app.state.runtime
    if runtime.db is None:
        return
    provider = provider_from_env(SETTINGS, app.state.settings.operator_token)
    app.state.provider = provider
    task = asyncio.create_task(sweep_forever(runtime.db, SETTINGS, provider), name="gpuaas-sweeper")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        provider.close()

    # Stop before the runtime disposes of the database engine.
    app.on_shutdown.insert(0, stop)


async def start_node_wakeups(app: Litestar) -> None:
    runtime = app.state.runtime
    if runtime.db is None or SETTINGS.node_sync_hold_s <= 0:
        return
    wakeups = NodeWakeups(runtime.db.url)
    wakeups.start()
    app.state.node_wakeups = wakeups
    app.on_shutdown.insert(0, wakeups.stop)


DEFINITION = ServiceDefinition(
    name="gpuaas",
    version=__version__,
    description="GPU runtime: SKUs, MIG profiles, providers, nodes, allocations, quotas, metering.",
    route_handlers=[AllocationController, SkuController, NodeController],
    migrations="gpuaas.store.migrations",
    subscriptions=[
        Subscription("balance-standing", (BALANCE_TOPIC,), balance_handler(SETTINGS)),
        Subscription("price-book", (PRICE_TOPIC,), price_handler()),
    ],
    on_startup=[start_sweeper, start_node_wakeups],
)


def build_app() -> Litestar:
    return build_service_app(DEFINITION)
