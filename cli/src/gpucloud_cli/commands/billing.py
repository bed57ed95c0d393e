"""balance, usage, top-up, statement: the tenant's money, from billing (integer micro-units
in every JSON document; human output in the balance's currency)."""

from __future__ import annotations

import datetime as dt
import sys
import time
from typing import Any

import click

from gpucloud_cli.app import App, confirm, json_option, pass_app
from gpucloud_cli.output import emit_json, fields, note, table
from gpucloud_cli.sdk.errors import InvalidInput, Unfinished
from gpucloud_cli.units import (
    format_money,
    parse_amount,
    parse_duration,
    parse_month,
    parse_since,
    short_id,
)

PAYMENT_POLL_S = 0.3


def _tenant_json(app_scope: Any) -> dict[str, Any]:
    return {"context": app_scope.context.name, "tenant_id": app_scope.tenant_id}


@click.command()
@json_option
@pass_app
def balance(app: App, as_json: bool) -> None:
    """Show the tenant's balance and standing.

    Needs a tenant role of owner, admin or billing.
    """
    scope = app.scope()
    found = scope.client.get_balance(scope.tenant_id)
    if as_json:
        emit_json({**_tenant_json(scope), "balance": found.to_json()})
        return
    c = found.currency
    fields(
        [
            ("available", format_money(found.available_micros, c)),
            ("wallet", format_money(found.wallet_micros, c)),
            ("standing", found.standing),
            ("low below", format_money(found.low_threshold_micros, c)),
        ],
        title=f"Balance of {scope.context.tenant_slug}",
    )
    if found.grants:
        table(
            ["GRANT", "GRANTED", "REMAINING", "PRIORITY", "EXPIRES"],
            [
                [
                    short_id(g.id),
                    format_money(g.granted_micros, c),
                    format_money(g.remaining_micros, c),
                    g.priority,
                    g.expires_at,
                ]
                for g in found.grants
            ],
            title="Promotional credit",
        )


@click.command()
@click.option(
    "--since",
    metavar="TIME",
    help="From: 2026-12-01, an ISO time, or a duration ago (7d) "
    "[default: billing's, the month so far].",
)
@click.option("--until", metavar="TIME", help="Until, the same way [default: now].")
@json_option
@pass_app
def usage(app: App, since: str | None, until: str | None, as_json: bool) -> None:
    """Show usage per project and price key.

    Net of reversals; needs a tenant role of owner, admin or billing.
    """
    now = dt.datetime.now(dt.UTC)

    def moment(field: str, text: str | None) -> str | None:
        if text is None:
            return None
        try:
            return parse_since(text, now).isoformat()
        except ValueError as exc:
            raise InvalidInput(field, str(exc)) from None

    scope = app.scope()
    report = scope.client.get_usage(scope.tenant_id, moment("since", since), moment("until", until))
    if as_json:
        emit_json({**_tenant_json(scope), "usage": report.to_json()})
        return
    current = scope.context.project_id
    table(
        ["PROJECT", "PRICE KEY", "# INTERVALS", "# GPU-HOURS", "# CHARGED", "# NET"],
        [
            [
                short_id(u.project_id or "-") + (" *" if u.project_id == current else ""),
                u.price_key,
                u.intervals,
                f"{u.gpu_seconds / 3600:.3f}",
                format_money(u.charged_micros),
                format_money(u.net_micros),
            ]
            for u in report.items
        ],
        title=f"Usage {report.since[:19]} .. {report.until[:19]} (* this project)",
        empty="no usage in this period",
    )


@click.command("top-up")
@click.argument("amount")
@click.option("--no-wait", is_flag=True, help="Return once the payment is started.")
@click.option(
    "--timeout",
    metavar="DURATION",
    default="2m",
    show_default=True,
    help="How long to wait for the provider.",
)
@click.option("-y", "--yes", is_flag=True, help="Pay without asking.")
@json_option
@pass_app
def top_up(app: App, amount: str, no_wait: bool, timeout: str, yes: bool, as_json: bool) -> None:
    """Add credit through the payment provider.

    AMOUNT is in the balance's currency (25, 12.50). Starts a payment with an
    Idempotency-Key, prints the checkout step, then waits until the provider settles it
    (the devstack's sandbox provider does so by itself, through its signed webhook).
    """
    from gpucloud_cli.sdk.client import new_idempotency_key
    from gpucloud_cli.sdk.models import PAYMENT_FINAL_STATES

    try:
        micros = parse_amount(amount)
    except ValueError as exc:
        raise InvalidInput("amount", str(exc)) from None
    try:
        timeout_s = parse_duration(timeout)
    except ValueError as exc:
        raise InvalidInput("timeout", str(exc)) from None
    scope = app.scope()
    before = scope.client.get_balance(scope.tenant_id)
    confirm(
        f"Pay {format_money(micros, before.currency)} into {scope.context.tenant_slug}?", yes=yes
    )
    key = new_idempotency_key()
    payment = scope.client.create_payment(scope.tenant_id, micros, key)
    if not as_json:
        note(
            f"Checkout: {payment.provider} payment "
            f"[bold]{payment.provider_ref or payment.id}[/bold] for "
            f"{format_money(payment.amount_micros, payment.currency)}: {payment.status}."
        )
        if payment.provider == "sandbox":
            note("[dim]The sandbox provider settles it by itself (a signed webhook).[/dim]")
        else:
            note(f"Confirm the payment with {payment.provider} (reference above) to settle it.")
    deadline = time.monotonic() + timeout_s
    while not no_wait and payment.status not in PAYMENT_FINAL_STATES:
        if time.monotonic() > deadline:
            break
        time.sleep(PAYMENT_POLL_S)
        payment = scope.client.get_payment(scope.tenant_id, payment.id)
    after = scope.client.get_balance(scope.tenant_id) if payment.status == "settled" else None
    document = {
        **_tenant_json(scope),
        "idempotency_key": key,
        "payment": payment.to_json(),
        "balance": after.to_json() if after else None,
    }
    if payment.status == "failed" or (not no_wait and payment.status not in PAYMENT_FINAL_STATES):
        why = f" ({payment.failure_reason})" if payment.failure_reason else ""
        raise Unfinished(f"payment {payment.id} is {payment.status}{why}", document=document)
    if as_json:
        emit_json(document)
        return
    if after is not None:
        note(
            f"Settled. Available now: [bold]{format_money(after.available_micros, after.currency)}"
            f"[/bold] ({after.standing})."
        )
    else:
        note(f"Payment {payment.id} is {payment.status}: `gpucloud balance` shows when it lands.")


@click.command()
@click.argument("month", required=False, metavar="[YYYY-MM]")
@click.option("--csv", "as_csv", is_flag=True, help="Print billing's CSV rendering instead.")
@json_option
@pass_app
def statement(app: App, month: str | None, as_csv: bool, as_json: bool) -> None:
    """Show the monthly statement (YYYY-MM).

    Opening balance, one line per movement kind (usage per price key and project),
    closing balance. MONTH defaults to the current one (UTC).
    """
    if as_csv and as_json:
        raise click.UsageError("--csv and --json: choose one")
    try:
        month = parse_month(month or dt.datetime.now(dt.UTC).strftime("%Y-%m"))
    except ValueError as exc:
        raise InvalidInput("month", str(exc)) from None
    scope = app.scope()
    if as_csv:
        sys.stdout.write(scope.client.get_statement_csv(scope.tenant_id, month))
        return
    found = scope.client.get_statement(scope.tenant_id, month)
    if as_json:
        emit_json({**_tenant_json(scope), "statement": found.to_json()})
        return
    c = found.currency
    fields(
        [
            ("period", f"{found.period_start[:10]} .. {found.period_end[:10]}"),
            ("opening", format_money(found.opening_micros, c)),
            ("usage", format_money(found.usage_micros, c)),
            ("closing", format_money(found.closing_micros, c)),
        ],
        title=f"Statement {found.month} of {scope.context.tenant_slug}",
    )
    table(
        ["KIND", "PRICE KEY", "PROJECT", "# INTERVALS", "# GPU-HOURS", "# AMOUNT"],
        [
            [
                line.kind,
                line.price_key,
                short_id(line.project_id or "-"),
                line.intervals,
                f"{line.gpu_seconds / 3600:.3f}",
                format_money(line.amount_micros, c),
            ]
            for line in found.lines
        ],
        empty="no movements this month",
    )
