"""login, logout, whoami, use: sessions and contexts (gpucloud_cli.config)."""

from __future__ import annotations

import os
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import click

from gpucloud_cli.app import App, json_option, pass_app
from gpucloud_cli.config import Context, Session, State
from gpucloud_cli.output import emit_json, fields, note, table
from gpucloud_cli.sdk.errors import (
    AuthError,
    GpucloudError,
    InvalidInput,
    MfaRequired,
    NotFound,
    NotSignedIn,
    UnknownName,
)
from gpucloud_cli.units import short_id

if TYPE_CHECKING:
    from gpucloud_cli.sdk.client import Client
    from gpucloud_cli.sdk.models import Project

DEFAULT_PROJECT_SLUG = "default"


class RestrictedSession(GpucloudError):
    problem_class = "auth"
    title = "Second factor required by the tenant"


def context_json(context: Context, current: str | None) -> dict[str, Any]:
    return {
        "name": context.name,
        "current": context.name == current,
        "gateway": context.gateway,
        "tenant_id": context.tenant_id,
        "tenant_slug": context.tenant_slug,
        "project_id": context.project_id,
        "project_slug": context.project_slug,
    }


def session_json(session: Session) -> dict[str, Any]:
    return {
        "kind": session.kind,
        "subject": session.subject,
        "email": session.email,
        "tenant_id": session.tenant_id,
        "tenant_slug": session.tenant_slug,
        "amr": session.amr,
        "access_expires_at": _iso(session.access_expires_at),
        "renews_with": "api_key" if session.api_key else "refresh_token",
    }


def _iso(unix: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(unix, dt.UTC).isoformat(timespec="seconds")


def _stdin_line(what: str) -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise InvalidInput(what, "nothing on stdin")
    return line


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def visible_projects(
    client: Client, tenant_id: str, tenant_roles: list[str], project_ids: list[str]
) -> list[Project]:
    """The projects this principal can act in: all of the tenant's with a tenant role
    (listing needs one), else those its project roles name."""
    if tenant_roles:
        try:
            return client.list_projects(tenant_id)
        except AuthError:
            pass
    found = []
    for project_id in project_ids:
        try:
            found.append(client.get_project(tenant_id, project_id))
        except (AuthError, NotFound):
            continue
    return found


def choose_project(projects: list[Project], wanted: str | None) -> Project | None:
    if wanted:
        for p in projects:
            if wanted in (p.id, p.slug) or wanted.lower() == p.name.lower():
                return p
        names = ", ".join(sorted(p.slug for p in projects)) or "none visible"
        raise UnknownName(f"no project {wanted!r} here; projects: {names}")
    if len(projects) == 1:
        return projects[0]
    return next((p for p in projects if p.slug == DEFAULT_PROJECT_SLUG), None)


def save_context(app: App, session: Session, project: Project | None) -> tuple[Context, State]:
    name = f"{session.tenant_slug}/{project.slug}" if project else session.tenant_slug
    context = Context(
        name=name,
        gateway=session.gateway,
        session=session.key,
        tenant_id=session.tenant_id,
        tenant_slug=session.tenant_slug,
        project_id=project.id if project else None,
        project_slug=project.slug if project else None,
    )
    with app.store.edit() as state:
        state.sessions[session.key] = session
        state.contexts[name] = context
        state.current_context = name
        state.default_gateway = session.gateway
    return context, state


@click.command()
@click.option(
    "--email", "-u", envvar="GPUCLOUD_EMAIL", help="Your account's email [env GPUCLOUD_EMAIL]."
)
@click.option("--tenant", "-t", help="Tenant slug or id (when your account is in several).")
@click.option(
    "--project", "-p", help="Project slug, name or id [default: the only one, or 'default']."
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password (with --api-key: the key) from stdin's first line; a second "
    "line, if any, is the TOTP code.",
)
@click.option("--otp", metavar="CODE", help="Your TOTP code, or one of your recovery codes.")
@click.option(
    "--api-key",
    is_flag=False,
    flag_value="-",
    default=None,
    metavar="[KEY]",
    help="Sign in as a service account. Without KEY: from GPUCLOUD_API_KEY, stdin "
    "(--password-stdin) or a prompt.",
)
@json_option
@pass_app
def login(
    app: App,
    email: str | None,
    tenant: str | None,
    project: str | None,
    password_stdin: bool,
    otp: str | None,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Sign in (password + TOTP, or an API key).

    Asks for the TOTP code when the account has a second factor. Stores the session in
    the config directory (mode 0600) and makes TENANT/PROJECT the current context. Access
    tokens are renewed transparently (refresh-token rotation; an API key re-mints).
    """
    from gpucloud_cli.sdk.client import token_claims
    from gpucloud_cli.sdk.credentials import StaticToken

    gateway = app.login_gateway(app.store.load())
    client = app.anonymous_client(gateway)
    started = time.time()
    if api_key is not None:
        key = api_key if api_key != "-" else os.environ.get("GPUCLOUD_API_KEY")
        if not key:
            key = (
                _stdin_line("api_key")
                if password_stdin
                else click.prompt("API key", hide_input=True, err=True)
            )
        token = client.client_credentials_grant(key.strip())
    else:
        key = None
        email = email or click.prompt("Email", err=True)
        password = (
            _stdin_line("password")
            if password_stdin
            else click.prompt("Password", hide_input=True, err=True)
        )
        try:
            token = client.password_grant(email, password, tenant, otp)
        except MfaRequired as exc:
            if password_stdin:
                code = sys.stdin.readline().strip()
                if not code:
                    exc.hint = "pass --otp CODE (or the code on stdin's second line)"
                    raise
            else:
                code = click.prompt("TOTP code (or a recovery code)", err=True).strip()
            token = client.password_grant(email, password, tenant, code)

    claims = token_claims(token.access_token)
    if claims.get("restricted"):
        raise RestrictedSession(
            "the tenant requires a second factor of its admins and this account has none: "
            "enroll one (POST /v1/iam/me/mfa/totp, then .../verify), then sign in again",
        )
    tenant_id, subject = str(claims.get("tenant") or ""), str(claims.get("sub") or "")
    if not tenant_id or not subject:
        raise NotSignedIn("iam's token names no tenant or subject")
    client.credentials = StaticToken(token.access_token)
    tenant_slug = tenant if tenant and not _is_uuid(tenant) else tenant_id
    try:
        tenant_slug = client.get_tenant(tenant_id).slug
    except (AuthError, NotFound):
        pass  # a project-only role cannot read the tenant; its slug stays what was typed
    project_roles = claims.get("proj") or {}
    projects = visible_projects(
        client, tenant_id, list(claims.get("roles") or []), list(project_roles)
    )
    chosen = choose_project(projects, project)
    session = Session(
        key=Session.key_for(gateway, tenant_id, subject),
        gateway=gateway,
        kind=str(claims.get("kind") or ("service_account" if key else "user")),
        subject=subject,
        tenant_id=tenant_id,
        tenant_slug=tenant_slug,
        access_token=token.access_token,
        access_expires_at=started + token.expires_in,
        refresh_token=token.refresh_token,
        api_key=key,
        email=email if key is None else None,
        amr=list(claims.get("amr") or []),
    )
    context, state = save_context(app, session, chosen)
    if as_json:
        emit_json(
            {
                "context": context_json(context, state.current_context),
                "session": session_json(session),
                "projects": [p.to_json() for p in projects],
            }
        )
        return
    who = session.email or f"service account {subject}"
    mfa = " with a second factor" if "otp" in session.amr else ""
    note(f"Signed in to [bold]{tenant_slug}[/bold] as {who}{mfa}.")
    if chosen is None:
        slugs = ", ".join(p.slug for p in projects) or "none visible"
        note(f"No project chosen (projects: {slugs}): run `gpucloud use {tenant_slug}/PROJECT`.")
    note(f"Context [bold]{context.name}[/bold] at {gateway} is now current.")


@click.command()
@click.option("--all", "everything", is_flag=True, help="Every session, not just the current one.")
@json_option
@pass_app
def logout(app: App, everything: bool, as_json: bool) -> None:
    """Sign out: forget the current context's session.

    iam has no route to revoke a refresh token yet, so this deletes the tokens from this
    machine only; the refresh token expires at iam within 14 days. An API key stays valid
    until revoked (`gpucloud keys revoke`).
    """
    with app.store.edit() as state:
        if everything:
            keys = list(state.sessions)
        else:
            current = state.context(app.context_option)
            keys = [current.session] if current else []
        sessions = [state.sessions[k] for k in keys if k in state.sessions]
        gone: list[str] = []
        for key in keys:
            gone += state.remove_session(key)
    remark = (
        "deleted locally; iam has no refresh-token revocation route, so the refresh token "
        "stays valid at iam until it expires (14 days)"
    )
    if any(s.api_key for s in sessions):
        remark += "; API keys stay valid until revoked (`gpucloud keys revoke`)"
    if as_json:
        emit_json(
            {
                "signed_out": [session_json(s) for s in sessions],
                "contexts_removed": sorted(gone),
                "revoked_at_iam": False,
                "note": remark,
            }
        )
        return
    if not sessions:
        note("Not signed in: nothing to do.")
        return
    for s in sessions:
        note(f"Signed out of {s.tenant_slug} ({s.email or s.subject}).")
    note(f"[dim]Tokens {remark}.[/dim]")


@click.command()
@json_option
@pass_app
def whoami(app: App, as_json: bool) -> None:
    """Show who you are signed in as, and where."""
    scope = app.scope()
    me = scope.client.whoami()
    state = app.store.load()
    session = state.sessions[scope.context.session]
    if as_json:
        emit_json(
            {
                "context": context_json(scope.context, state.current_context),
                "session": session_json(session),
                "me": me.to_json(),
            }
        )
        return
    project_roles = ", ".join(
        f"{short_id(pid)}: {'/'.join(r)}" for pid, r in sorted(me.project_roles.items())
    )
    fields(
        [
            ("context", scope.context.name),
            ("gateway", scope.context.gateway),
            ("signed in as", session.email or "a service account (API key)"),
            ("subject", f"{me.kind} {me.subject}"),
            ("tenant", f"{scope.context.tenant_slug} ({scope.context.tenant_id})"),
            (
                "project",
                f"{scope.context.project_slug} ({scope.context.project_id})"
                if scope.context.project_id
                else None,
            ),
            ("tenant roles", ", ".join(me.roles)),
            ("project roles", project_roles),
            ("second factor", "yes" if "otp" in me.amr else "no"),
            ("token renews", "with the API key" if session.api_key else "with the refresh token"),
        ]
    )


@click.command()
@click.argument("target", required=False, metavar="[TENANT/PROJECT | PROJECT | CONTEXT]")
@json_option
@pass_app
def use(app: App, target: str | None, as_json: bool) -> None:
    """Choose the tenant/project commands act in; list contexts.

    TENANT and PROJECT are slugs, names or ids; a tenant needs a session (`gpucloud login
    --tenant TENANT`). Without TARGET: list the contexts.
    """
    state = app.store.load()
    if target is None:
        contexts = sorted(state.contexts.values(), key=lambda c: c.name)
        if as_json:
            emit_json(
                {
                    "current": state.current_context,
                    "contexts": [context_json(c, state.current_context) for c in contexts],
                }
            )
            return
        table(
            ["", "CONTEXT", "TENANT", "PROJECT", "GATEWAY"],
            [
                (
                    "*" if c.name == state.current_context else "",
                    c.name,
                    c.tenant_slug,
                    c.project_slug,
                    c.gateway,
                )
                for c in contexts
            ],
            empty="no contexts: run `gpucloud login`",
        )
        return
    if target in state.contexts and (
        not app.gateway_option or state.contexts[target].gateway == app.login_gateway(state)
    ):
        context = state.contexts[target]
        with app.store.edit() as edited:
            edited.current_context = context.name
        _used(context, as_json)
        return
    tenant_part, _, project_part = target.rpartition("/")
    gateway = app.login_gateway(state)
    current = state.context(app.context_option)
    session = _session_for(state, gateway, tenant_part, current)
    client = app.client_for(session)
    me = client.whoami()
    projects = visible_projects(client, session.tenant_id, me.roles, list(me.project_roles))
    chosen = choose_project(projects, project_part)
    if chosen is None:  # pragma: no cover - choose_project raises for a named project
        raise UnknownName(f"no project {project_part!r}")
    context, _ = save_context(app, session, chosen)
    _used(context, as_json)


def _session_for(state: State, gateway: str, tenant: str, current: Context | None) -> Session:
    if not tenant:
        if current is None:
            raise NotSignedIn("no current context: give TENANT/PROJECT, or `gpucloud login`")
        return state.sessions[current.session]
    matches = [
        s
        for s in state.sessions.values()
        if s.gateway == gateway and tenant in (s.tenant_slug, s.tenant_id)
    ]
    if not matches:
        raise NotSignedIn(
            f"not signed in to tenant {tenant!r} at {gateway}: "
            f"run `gpucloud login --tenant {tenant}`"
        )
    if current is not None:
        for s in matches:
            if s.key == current.session:
                return s
    return matches[0]


def _used(context: Context, as_json: bool) -> None:
    if as_json:
        emit_json({"context": context_json(context, context.name)})
    else:
        note(f"Context [bold]{context.name}[/bold] ({context.gateway}) is now current.")
