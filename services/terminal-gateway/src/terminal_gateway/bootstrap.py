"""Wires terminal-gateway: routes, migrations, the projections' subscriptions, and its jobs
(the sweeper, the session wakeups and membership re-checks, the terminations of detached
shells at their nodes, the SSH endpoint), all supervised by the kit's runtime; the start-up
hook loads its keys and builds what the routes and jobs share."""

from __future__ import annotations

import uuid

from litestar import Litestar

from platformkit.definition import ServiceDefinition
from platformkit.http import build_service_app
from platformkit.jobs import Job, JobRun
from platformkit.settings import TOKEN_SETTINGS, ServiceSettings
from terminal_gateway import SERVICE, __version__
from terminal_gateway.api.routes import (
    SessionController,
    TenantSessionController,
    TerminalContext,
    connect,
    jwks,
    ssh_endpoint,
)
from terminal_gateway.api.ssh import serve_ssh
from terminal_gateway.app.keys import KeyStore
from terminal_gateway.app.projections import subscriptions
from terminal_gateway.app.relay import RelayRegistry
from terminal_gateway.app.sessions import SessionService
from terminal_gateway.app.sweeper import sweep_once
from terminal_gateway.app.terminations import NodeTerminations
from terminal_gateway.app.watch import SessionWatch
from terminal_gateway.settings import TerminalSettings

SETTINGS = TerminalSettings.from_env()
SESSIONS = SessionService(SETTINGS)
# Long-running jobs restart this soon after their session ends, backing off while it fails.
RESTART_S, MAX_BACKOFF_S = 0.5, 10.0


async def start_terminal(app: Litestar) -> None:
    """Keys (created on first start), the relay registry, the session watch and the
    terminations queue, before the runtime starts the consumers and jobs that use them."""
    state = app.state
    runtime = state.runtime
    service: SessionService = state.terminal_service
    keys = KeyStore(runtime.database, service.settings.issuer, service.settings.key_passphrase)
    await keys.load()
    service.bind(runtime.database, keys, runtime.memberships)
    registry = RelayRegistry()
    state.terminal = TerminalContext(
        service, registry, instance=f"{runtime.instance}/{uuid.uuid4().hex[:6]}"
    )
    state.node_terminations = NodeTerminations(service)
    service.on_revoked_detached = state.node_terminations.request
    state.session_watch = SessionWatch(service, registry, runtime.memberships)


def definition(service: SessionService = SESSIONS) -> ServiceDefinition:
    settings = service.settings

    def install(app: Litestar) -> None:
        app.state.terminal_service = service

    def loop(name: str, run: JobRun, enabled: bool = True) -> Job:
        return Job(
            name, RESTART_S if enabled else 0, run, immediate=True, max_backoff_s=MAX_BACKOFF_S
        )

    return ServiceDefinition(
        name=SERVICE,
        version=__version__,
        # where browsers open the WebSocket; the session-token signing keys sealed at rest
        required_settings=(
            *TOKEN_SETTINGS,
            "GPUCLOUD_TERMINAL_PUBLIC_URL",
            "GPUCLOUD_TERMINAL_KEY_PASSPHRASE",
        ),
        description="Workload access: terminal sessions (browser and SSH) relayed to node-agent"
        " PTYs, recorded and audited.",
        route_handlers=[SessionController, TenantSessionController, jwks, ssh_endpoint, connect],
        migrations="terminal_gateway.store.migrations",
        subscriptions=subscriptions(service),
        jobs=[
            Job(
                "sweeper",
                settings.sweep_interval_s,
                lambda rt: sweep_once(rt.state.terminal_service, rt.state.terminal.registry),
                immediate=True,
            ),
            loop("session-wakeups", lambda rt: rt.state.session_watch.listen()),
            loop("membership-rechecks", lambda rt: rt.state.session_watch.recheck_forever()),
            loop("node-terminations", lambda rt: rt.state.node_terminations.run()),
            loop(
                "ssh-endpoint",
                lambda rt: serve_ssh(
                    rt.state.terminal, rt.memberships, settings.ssh_host, settings.ssh_port
                ),
                enabled=bool(settings.ssh_port),
            ),
        ],
        on_startup=[install, start_terminal],
    )


DEFINITION = definition()


def build_app(settings: ServiceSettings | None = None) -> Litestar:
    return build_service_app(DEFINITION, settings)
