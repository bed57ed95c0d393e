"""What every command shares: the config store, the context it acts in, a client for it,
and the confirmation rule. Commands stay thin: parse, call the SDK, print."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import click

from gpucloud_cli.config import DEFAULT_GATEWAY, Context, Session, State, Store
from gpucloud_cli.sdk.errors import GpucloudError, InvalidInput, NotSignedIn

if TYPE_CHECKING:
    from gpucloud_cli.sdk.client import Client

F = TypeVar("F", bound=Callable[..., Any])
INSECURE_HTTP_ENV = "GPUCLOUD_INSECURE_HTTP"


class NoProject(GpucloudError):
    problem_class = "usage"
    title = "No project selected"


def normalize_gateway(url: str) -> str:
    """`https://host[:port][/prefix]` without a trailing slash. Plain http only to this
    machine (tokens would cross the network in the clear) unless GPUCLOUD_INSECURE_HTTP=1."""
    raw = url.strip().rstrip("/")
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("gateway", f"{url!r} is not an http(s) URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidInput("gateway", "give scheme, host, port and path only")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        if os.environ.get(INSECURE_HTTP_ENV) != "1":
            raise InvalidInput(
                "gateway",
                f"plain http to {parts.hostname} would send your tokens in the clear: use "
                f"https (or set {INSECURE_HTTP_ENV}=1 on a network you trust)",
            )
    return raw


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass
class Scope:
    """The context a command acts in, with a client signed in for it."""

    context: Context
    client: Client

    @property
    def tenant_id(self) -> str:
        return self.context.tenant_id

    @property
    def project_id(self) -> str:
        if not self.context.project_id:
            raise NoProject(
                f"context {self.context.name!r} has no project: "
                f"run `gpucloud use {self.context.tenant_slug}/PROJECT`"
            )
        return self.context.project_id


class App:
    def __init__(
        self,
        gateway_option: str | None = None,
        context_option: str | None = None,
        store: Store | None = None,
    ) -> None:
        self.gateway_option = gateway_option
        self.context_option = context_option
        self.store = store or Store()
        self._clients: list[Client] = []

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()

    def login_gateway(self, state: State) -> str:
        """Where to sign in: --gateway / GPUCLOUD_GATEWAY, else the current context's, else
        the configured default, else http://127.0.0.1:8080."""
        if self.gateway_option:
            return normalize_gateway(self.gateway_option)
        current = state.context(self.context_option)
        if current is not None:
            return current.gateway
        return normalize_gateway(state.default_gateway or DEFAULT_GATEWAY)

    def context(self, state: State | None = None) -> Context:
        state = state or self.store.load()
        name = self.context_option or state.current_context
        if not name:
            raise NotSignedIn("no context yet: run `gpucloud login`")
        found = state.contexts.get(name)
        if found is None:
            raise NotSignedIn(f"no context named {name!r}: `gpucloud use` lists them")
        if self.gateway_option and normalize_gateway(self.gateway_option) != found.gateway:
            # never send a session's tokens to another gateway than the one that issued them
            raise NotSignedIn(
                f"context {name!r} is signed in at {found.gateway}, not at "
                f"{normalize_gateway(self.gateway_option)}: run `gpucloud login` there"
            )
        if found.session not in state.sessions:
            raise NotSignedIn(f"context {name!r} is signed out: run `gpucloud login`")
        return found

    def anonymous_client(self, gateway: str) -> Client:
        from gpucloud_cli.sdk.client import Client

        client = Client(gateway)
        self._clients.append(client)
        return client

    def client_for(self, session: Session) -> Client:
        client = self.anonymous_client(session.gateway)
        client.tenant_id = session.tenant_id
        client.credentials = client.stored_session(self.store, session.key)
        return client

    def scope(self) -> Scope:
        state = self.store.load()
        context = self.context(state)
        client = self.client_for(state.sessions[context.session])
        client.project_id = context.project_id
        return Scope(context, client)


pass_app = click.make_pass_decorator(App)


def json_option(function: F) -> F:
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print one JSON document (schema in docs/cli.md) and nothing else.",
    )(function)


def confirm(question: str, *, yes: bool) -> None:
    """Ask on stderr (stdout may carry the JSON document) unless -y. No answer (end of
    input) is a no: nothing is changed."""
    if not yes and not click.confirm(question, default=False, err=True):
        raise click.exceptions.Abort()
