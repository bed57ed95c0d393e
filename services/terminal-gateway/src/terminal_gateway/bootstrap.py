"""Wires terminal-gateway: routes, migrations, the projections' consumers, its keys, the
relay registry, the session watch (NOTIFY + membership re-checks), the sweeper and the SSH
endpoint, all started after the kit's runtime and stopped before it."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Litestar

from platformkit.http import ServiceDefinition, build_service_app
from platformkit.settings import ServiceSettings
from terminal_gateway import __version__
from terminal_gateway.api.routes import (
    SessionController,
    TenantSessionController,
    TerminalContext,
    connect,
    jwks,
    ssh_endpoint,
)
from terminal_gateway.app.keys import KeyStore
from terminal_gateway.app.projections import subscriptions
from terminal_gateway.app.relay import RelayRegistry, terminate_at_node
from terminal_gateway.app.sessions import SessionService
from terminal_gateway.app.supervisor import Supervisor
from terminal_gateway.app.sweeper import sweep_forever
from terminal_gateway.app.watch import SessionWatch
from terminal_gateway.settings import TerminalSettings
from terminal_gateway.store.repository import ProjectionRepository

SETTINGS = TerminalSettings.from_env()
SERVICE = SessionService(SETTINGS)


async def start_terminal(app: Litestar) -> None:
    runtime = app.state.runtime
    if runtime.db is None:
        return
    service: SessionService = app.state.terminal_service
    keys = KeyStore(runtime.db, service.settings.issuer, service.settings.key_passphrase)
    await keys.load()
    memberships = runtime.memberships
    service.bind(runtime.db, keys, memberships)
    registry = RelayRegistry()
    ctx = TerminalContext(service, registry, instance=f"{runtime.instance}/{uuid.uuid4().hex[:6]}")
    app.state.terminal = ctx
    supervisor = Supervisor()
    app.state.terminal_supervisor = supervisor

    def terminate_detached(session: Any) -> None:
        async def terminate() -> None:
            async with service.db.unit_of_work() as uow:
                node = await ProjectionRepository(uow).node(session["node_id"])
            if node is not None and node["agent_url"] and session.get("opened_at"):
                await terminate_at_node(service, session, node)

        supervisor.spawn(terminate(), name=f"terminate-{session['id']}")

    service.on_revoked_detached = terminate_detached
    watch = SessionWatch(service, registry, memberships)
    watch.start()
    supervisor.on_stop(watch.stop)
    supervisor.spawn(sweep_forever(service, registry), name="terminal-sweeper")
    if service.settings.ssh_port:
        from terminal_gateway.api.ssh import start_ssh_server

        server = await start_ssh_server(
            ctx, memberships, service.settings.ssh_host, service.settings.ssh_port
        )
        app.state.ssh_server = server

        async def stop_ssh() -> None:
            server.close()
            await server.wait_closed()

        supervisor.on_stop(stop_ssh)
    # Stop before the runtime disposes of the database engine.
    app.on_shutdown.insert(0, lambda _app: supervisor.stop())


def definition(service: SessionService = SERVICE) -> ServiceDefinition:
    async def install(app: Litestar) -> None:
        app.state.terminal_service = service

    return ServiceDefinition(
        name="terminal-gateway",
        version=__version__,
        description="Workload access: terminal sessions (browser and SSH) relayed to node-agent"
        " PTYs, recorded and audited.",
        route_handlers=[SessionController, TenantSessionController, jwks, ssh_endpoint, connect],
        migrations="terminal_gateway.store.migrations",
        subscriptions=subscriptions(service),
        on_startup=[install, start_terminal],
    )


DEFINITION = definition()


def build_app(settings: ServiceSettings | None = None) -> Litestar:
    return build_service_app(DEFINITION, settings)
