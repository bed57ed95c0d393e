"""keys and service-accounts: the current project's service accounts and their API keys,
through iam (creating either needs a recent second factor: iam's step-up). Users' SSH keys
are `gpucloud ssh-keys` (commands/access.py)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import click

from gpucloud_cli.app import App, Scope, confirm, json_option, pass_app
from gpucloud_cli.output import emit_json, note, table
from gpucloud_cli.sdk.errors import UnknownName

if TYPE_CHECKING:
    from gpucloud_cli.sdk.models import ApiKey, ServiceAccount


def _account(scope: Scope, wanted: str) -> ServiceAccount:
    accounts = scope.client.list_service_accounts(scope.tenant_id, scope.project_id)
    for a in accounts:
        if wanted in (a.id, a.name):
            return a
    names = ", ".join(sorted(a.name for a in accounts)) or "none yet"
    raise UnknownName(f"no service account {wanted!r} in this project; accounts: {names}")


def _status(key: ApiKey, now: dt.datetime) -> str:
    if key.revoked_at:
        return "revoked"
    expires = dt.datetime.fromisoformat(key.expires_at.replace("Z", "+00:00"))
    return "expired" if expires <= now else "active"


def _scope_json(scope: Scope) -> dict[str, str]:
    return {
        "context": scope.context.name,
        "tenant_id": scope.tenant_id,
        "project_id": scope.project_id,
    }


@click.group()
def keys() -> None:
    """API keys of the project's service accounts."""


@keys.command("list")
@click.option(
    "--service-account", "-s", "account", metavar="NAME|ID", help="Only this account's keys."
)
@json_option
@pass_app
def list_keys(app: App, account: str | None, as_json: bool) -> None:
    """List API keys (never their secrets)."""
    scope = app.scope()
    accounts = (
        [_account(scope, account)]
        if account
        else scope.client.list_service_accounts(scope.tenant_id, scope.project_id)
    )
    found = [
        (a, k)
        for a in accounts
        for k in scope.client.list_api_keys(scope.tenant_id, scope.project_id, a.id)
    ]
    if as_json:
        emit_json({**_scope_json(scope), "keys": [k.to_json() for _, k in found]})
        return
    now = dt.datetime.now(dt.UTC)
    table(
        ["KEY ID", "PREFIX", "SERVICE ACCOUNT", "STATUS", "CREATED", "EXPIRES"],
        [
            [k.id, k.prefix, a.name, _status(k, now), k.created_at[:19], k.expires_at[:19]]
            for a, k in found
        ],
        empty="no API keys in this project",
    )


@keys.command("create")
@click.argument("account", metavar="SERVICE_ACCOUNT")
@click.option("--expires-in-days", type=click.IntRange(1, 365), default=90, show_default=True)
@click.option(
    "--replaces",
    metavar="KEY_ID",
    help="Rotate: the key this one replaces (it expires after --overlap-hours).",
)
@click.option("--overlap-hours", type=click.IntRange(0, 720), default=24, show_default=True)
@json_option
@pass_app
def create_key(
    app: App,
    account: str,
    expires_in_days: int,
    replaces: str | None,
    overlap_hours: int,
    as_json: bool,
) -> None:
    """Issue an API key for a service account (name or id).

    The secret is shown this once. Sign in with it: `gpucloud login --api-key`.
    """
    scope = app.scope()
    sa = _account(scope, account)
    issued = scope.client.issue_api_key(
        scope.tenant_id,
        scope.project_id,
        sa.id,
        expires_in_days=expires_in_days,
        replaces=replaces,
        overlap_hours=overlap_hours,
    )
    if as_json:
        emit_json(
            {
                **_scope_json(scope),
                "service_account": sa.to_json(),
                "key": issued.key.to_json(),
                "api_key": issued.api_key,
            }
        )
        return
    note(
        f"API key [bold]{issued.key.id}[/bold] for {sa.name}, expires {issued.key.expires_at[:10]}."
    )
    note("[yellow]Shown this once; iam keeps only a digest:[/yellow]")
    click.echo(issued.api_key)


@keys.command("revoke")
@click.argument("key_id")
@click.option(
    "--service-account",
    "-s",
    "account",
    metavar="NAME|ID",
    help="Its account (found by looking when not given).",
)
@click.option("-y", "--yes", is_flag=True, help="Revoke without asking.")
@json_option
@pass_app
def revoke_key(app: App, key_id: str, account: str | None, yes: bool, as_json: bool) -> None:
    """Revoke an API key: every service refuses its tokens within seconds."""
    scope = app.scope()
    accounts = (
        [_account(scope, account)]
        if account
        else scope.client.list_service_accounts(scope.tenant_id, scope.project_id)
    )
    owner = next(
        (
            a
            for a in accounts
            for k in scope.client.list_api_keys(scope.tenant_id, scope.project_id, a.id)
            if k.id == key_id
        ),
        None,
    )
    if owner is None:
        raise UnknownName(f"no API key {key_id!r} in this project")
    confirm(f"Revoke API key {key_id} of {owner.name}?", yes=yes)
    scope.client.revoke_api_key(scope.tenant_id, scope.project_id, owner.id, key_id)
    if as_json:
        emit_json({**_scope_json(scope), "revoked": {"id": key_id, "service_account_id": owner.id}})
        return
    note(f"Revoked API key {key_id} of {owner.name}.")


@click.group("service-accounts")
def service_accounts() -> None:
    """The project's service accounts."""


@service_accounts.command("list")
@json_option
@pass_app
def list_accounts(app: App, as_json: bool) -> None:
    """List the project's service accounts."""
    scope = app.scope()
    found = scope.client.list_service_accounts(scope.tenant_id, scope.project_id)
    if as_json:
        emit_json({**_scope_json(scope), "service_accounts": [a.to_json() for a in found]})
        return
    table(
        ["ID", "NAME", "CREATED"],
        [[a.id, a.name, a.created_at[:19]] for a in found],
        empty="no service accounts in this project",
    )


@service_accounts.command("create")
@click.argument("name")
@click.option(
    "--role", type=click.Choice(["admin", "member", "viewer"]), default="member", show_default=True
)
@json_option
@pass_app
def create_account(app: App, name: str, role: str, as_json: bool) -> None:
    """Create a service account in the project, with a project role."""
    scope = app.scope()
    sa = scope.client.create_service_account(scope.tenant_id, scope.project_id, name, role)
    if as_json:
        emit_json({**_scope_json(scope), "service_account": sa.to_json(), "role": role})
        return
    note(f"Service account [bold]{sa.name}[/bold] ({sa.id}) created as {role}.")
