"""Wires the node agent. No database, no Kafka: it talks to gpuaas over HTTP only."""

import os
from collections.abc import Mapping

from litestar import Litestar, get
from litestar.datastructures import State

from node_agent import __version__
from node_agent.agent import (
    SESSION_MAX_BACKOFF_S,
    SESSION_RESTART_S,
    AgentSettings,
    NodeAgent,
)
from node_agent.app_proxy import AppProxy, AppProxyVerifier, app_logs, app_port
from node_agent.isolation import accounts_from_env, harden_agent
from node_agent.session_tokens import SessionTokenVerifier
from node_agent.terminal import TerminalService, TerminalSettings, forward, terminal
from platformkit.auth import Principal
from platformkit.definition import ServiceDefinition
from platformkit.http import build_service_app
from platformkit.jobs import Job


@get("/v1/node/state", operation_id="nodeState", tags=["node"])
async def node_state(state: State, principal: Principal) -> dict[str, object]:
    """What this agent runs (operator only)."""
    principal.require_operator()
    agent: NodeAgent = state.agent
    return {
        "node_id": agent.node_id,
        "node_name": agent.settings.node_name,
        "gpus": [g.__dict__ for g in agent.gpus],
        "observed": agent.reconciler.observed(),
        "syncs": agent.syncs,
    }


def terminal_service(agent: NodeAgent, settings: TerminalSettings) -> TerminalService:
    """The PTY stream; without terminal-gateway's JWKS it refuses every session."""
    verifier = (
        SessionTokenVerifier.from_jwks_url(
            settings.jwks_url, node_name=agent.settings.node_name, issuer=settings.issuer
        )
        if settings.jwks_url
        else None
    )
    workspaces = agent.settings.state_dir / "workspaces" / agent.settings.node_name
    return TerminalService(settings, verifier, agent.reconciler, workspaces)


def apps_jwks_url(environ: Mapping[str, str]) -> str | None:
    """appplatform's app-proxy JWKS: GPUCLOUD_APPS_JWKS_URL, else under GPUCLOUD_APPPLATFORM_URL
    (what Helm gives a service that `calls` appplatform)."""
    if environ.get("GPUCLOUD_APPS_JWKS_URL"):
        return environ["GPUCLOUD_APPS_JWKS_URL"]
    base = environ.get("GPUCLOUD_APPPLATFORM_URL")
    return f"{base.rstrip('/')}/v1/apps/.well-known/jwks.json" if base else None


def start_agent(app: Litestar) -> None:
    settings = AgentSettings.from_env()
    harden_agent(settings.state_dir)  # its files private before it writes any
    agent = NodeAgent(settings)
    # Each allocation's workload and shells run as its own unprivileged user.
    agent.reconciler.accounts = accounts_from_env(settings.node_name, settings.state_dir)
    app.state.agent = agent
    app.state.terminal = terminal_service(agent, TerminalSettings.from_env())
    # appplatform's connect URLs and logs; without its JWKS every proxy request is refused.
    jwks = apps_jwks_url(os.environ)
    verifier = AppProxyVerifier.from_jwks_url(jwks, node_name=settings.node_name) if jwks else None
    app.state.app_proxy = AppProxy(verifier, agent.reconciler)


async def stop_agent(app: Litestar) -> None:
    """After the sync job stopped: shells end (their sessions are told), the workloads keep
    running (a restart adopts them)."""
    await app.state.terminal.close_all()
    await app.state.app_proxy.close()
    app.state.agent.reconciler.stop_all()


DEFINITION = ServiceDefinition(
    name="gpuaas-node-agent",
    version=__version__,
    # which node it is, where gpuaas, terminal-gateway and appplatform are, and its
    # credential; where it pulls bundles from and caches them (a production node verifies
    # every byte it runs)
    required_settings=(
        "GPUCLOUD_NODE_NAME",
        "GPUCLOUD_GPUAAS_URL",
        "GPUCLOUD_TERMINAL_GATEWAY_URL",
        "GPUCLOUD_APPPLATFORM_URL",
        "GPUCLOUD_NODE_BOOTSTRAP_TOKEN",
        "GPUCLOUD_NODE_BUNDLE_DIR",
        "GPUCLOUD_NODE_OCI_URL",
    ),
    description="GPU node agent: discovery, reconciliation of desired allocations.",
    route_handlers=[node_state, terminal, forward, app_port, app_logs],
    kafka=False,
    relay=False,
    jobs=[
        Job(
            "node-sync",
            SESSION_RESTART_S,
            lambda rt: rt.state.agent.run(),
            immediate=True,
            max_backoff_s=SESSION_MAX_BACKOFF_S,
        )
    ],
    on_startup=[start_agent],
    on_shutdown=[stop_agent],
)


def build_app() -> Litestar:
    return build_service_app(DEFINITION)
