"""skus, launch, ps, get, release, down: gpuaas's allocations in the current project."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

import click

from gpucloud_cli.app import App, Scope, confirm, json_option, pass_app
from gpucloud_cli.output import emit_json, fields, note, table
from gpucloud_cli.sdk.errors import GpucloudError, InvalidInput, Unfinished, UnknownName
from gpucloud_cli.sdk.models import LaunchedBundle
from gpucloud_cli.units import format_duration, format_money, parse_duration, short_id

if TYPE_CHECKING:
    from gpucloud_cli.pricing import Quote
    from gpucloud_cli.sdk.models import Allocation, Price, Sku

DEFAULT_TIMEOUT = "10m"


def _seconds(option: str, text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise InvalidInput(option, str(exc)) from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _age(since: str | None) -> str | None:
    if not since:
        return None
    moment = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
    return format_duration((_now() - moment).total_seconds())


def scope_json(scope: Scope) -> dict[str, Any]:
    return {
        "context": scope.context.name,
        "tenant_id": scope.tenant_id,
        "project_id": scope.project_id,
    }


def resolve_allocation(scope: Scope, text: str) -> str:
    """A full allocation id, or 4+ hex digits that start or end exactly one id of this
    project (`gpucloud ps` shows the last 8)."""
    raw = text.strip().lower()
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        pass
    digits = raw.replace("-", "")
    if len(digits) < 4 or any(c not in "0123456789abcdef" for c in digits):
        raise InvalidInput("id", f"{text!r} is not an allocation id (nor 4+ of its hex digits)")
    found = [
        a.id
        for a in scope.client.iter_allocations(scope.tenant_id, scope.project_id)
        if a.id.replace("-", "").endswith(digits) or a.id.replace("-", "").startswith(digits)
    ]
    if not found:
        raise UnknownName(f"no allocation {text!r} in this project")
    if len(found) > 1:
        raise InvalidInput("id", f"{text!r} matches {len(found)} allocations: give more digits")
    return found[0]


def allocation_rows(allocations: list[Allocation]) -> list[list[Any]]:
    return [
        [
            short_id(a.id),
            a.sku,
            a.mig_profile,
            a.count,
            a.state,
            a.reason,
            _age(a.running_since) if a.state == "running" else None,
            format_duration(a.idle_stop_after_s) if a.idle_stop_after_s else None,
            _age(a.created_at),
        ]
        for a in allocations
    ]


ALLOCATION_COLUMNS = ["ID", "SKU", "MIG", "#", "STATE", "REASON", "RUNNING", "IDLE STOP", "AGE"]


def show_allocation(a: Allocation) -> None:
    fields(
        [
            ("id", a.id),
            ("state", a.state + (f" ({a.reason})" if a.reason else "")),
            ("sku", a.sku),
            ("mig profile", a.mig_profile),
            ("count", a.count),
            ("price key", a.price_key),
            ("node", a.node_id),
            ("created", a.created_at),
            ("running since", a.running_since),
            ("idle stop", format_duration(a.idle_stop_after_s) if a.idle_stop_after_s else None),
            ("last active", a.last_active_at),
            ("bundle", _bundle_line(a.bundle) if a.bundle else None),
        ]
    )
    if a.instances:
        table(
            ["GPU", "DEVICE", "START", "MEMORY SLICES", "COMPUTE SLICES"],
            [
                [i.gpu_index, i.device_uuid, i.start, i.memory_slices, i.compute_slices]
                for i in a.instances
            ],
        )


def _follow(
    scope: Scope,
    allocation: Allocation,
    target: str,
    *,
    wait: bool,
    timeout_s: int,
    as_json: bool,
) -> tuple[Allocation, bool, list[dict[str, Any]]]:
    """With `wait`: follow the allocation until it is in `target` (running, released) or
    can no longer get there. The last allocation seen, whether it got there, its history."""
    from gpucloud_cli.progress import GIVES_UP, Follow, first_entry

    if not wait:
        return allocation, True, [first_entry(allocation)]
    follow = Follow(
        lambda: scope.client.get_allocation(scope.tenant_id, scope.project_id, allocation.id),
        until=frozenset({target}),
        gives_up=GIVES_UP[target],
        timeout_s=timeout_s,
        display=not as_json,
        label=short_id(allocation.id),
    )
    try:
        last, reached = follow.run(allocation)
    except KeyboardInterrupt:
        if not as_json:
            note(
                f"Stopped following; {allocation.id} goes on: "
                f"`gpucloud get {short_id(allocation.id)}`."
            )
        raise
    return last, reached, follow.history


# skus


@click.command()
@json_option
@pass_app
def skus(app: App, as_json: bool) -> None:
    """List GPU SKUs and MIG profiles with what is free."""
    scope = app.scope()
    found = scope.client.list_skus()
    if as_json:
        emit_json({"skus": [s.to_json() for s in found]})
        return
    prices = _prices(scope)
    from gpucloud_cli.pricing import quote

    def hourly(price_key: str) -> str | None:
        q = quote(prices, price_key, 1, scope.tenant_id, _now())
        return format_money(q.micros_per_gpu_hour, q.currency) if q else None

    table(
        ["SKU", "NAME", "MEMORY", "GPUS FREE", "MIG", "PRICE / GPU-HOUR"],
        [
            [
                s.key,
                s.name,
                f"{s.memory_gb} GB",
                f"{s.gpus_free}/{s.gpus_total}",
                "yes" if s.mig_capable else "no",
                hourly(s.price_key),
            ]
            for s in found
        ],
    )
    for s in found:
        if s.mig_capable and s.profiles:
            table(
                ["PROFILE", "COMPUTE", "MEMORY SLICES", "MAX/GPU", "# AVAILABLE", "PRICE / HOUR"],
                [
                    [
                        p.name,
                        f"{p.compute_slices}/7",
                        f"{p.memory_slices}/8",
                        p.max_per_gpu,
                        p.available,
                        hourly(p.price_key),
                    ]
                    for p in s.profiles
                ],
                title=f"{s.key} MIG profiles",
            )


def _prices(scope: Scope) -> list[Price]:
    from gpucloud_cli.sdk.errors import AuthError

    try:
        return scope.client.list_prices()
    except AuthError:
        return []


# launch


def plan_for(
    catalog: list[Sku],
    prices: list[Price],
    sku_key: str,
    mig_profile: str | None,
    count: int,
    idle_stop_after_s: int | None,
    tenant_id: str,
    now: dt.datetime,
) -> tuple[dict[str, Any], Quote | None]:
    """What a launch will ask for and cost, checked against gpuaas's own catalog."""
    from gpucloud_cli.pricing import quote

    sku = next((s for s in catalog if s.key == sku_key), None)
    if sku is None:
        keys = ", ".join(s.key for s in catalog)
        raise InvalidInput("sku", f"unknown SKU {sku_key!r}; one of {keys}")
    if mig_profile is None:
        price_key, available = sku.price_key, sku.gpus_free
    else:
        profile = sku.profile(mig_profile)
        if profile is None or not sku.mig_capable:
            names = ", ".join(p.name for p in sku.profiles) or "none: not MIG-capable"
            raise InvalidInput(
                "mig_profile", f"{mig_profile!r} is not a MIG profile of {sku.key}; one of {names}"
            )
        price_key, available = profile.price_key, profile.available
    found = quote(prices, price_key, count, tenant_id, now)
    plan = {
        "sku": sku.key,
        "mig_profile": mig_profile,
        "count": count,
        "idle_stop_after_s": idle_stop_after_s,
        "price_key": price_key,
        "available": available,
        "price": found.to_json() if found else None,
    }
    return plan, found


@click.command()
@click.option("--sku", required=True, help="The GPU SKU, e.g. h100-80gb (`gpucloud skus`).")
@click.option(
    "--mig",
    "mig_profile",
    metavar="PROFILE",
    help="A MIG profile of the SKU, e.g. 1g.10gb (whole GPUs without it).",
)
@click.option(
    "--count",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="GPUs, or MIG slices, on one node.",
)
@click.option(
    "--idle-stop",
    metavar="DURATION",
    help="Release it after this long without workload activity, e.g. 30m (at least 60s).",
)
@click.option("--wait", is_flag=True, help="Follow it through its states until it runs (or ends).")
@click.option(
    "--timeout",
    metavar="DURATION",
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="How long --wait waits.",
)
@click.option("-y", "--yes", is_flag=True, help="Launch without asking.")
@json_option
@pass_app
def launch(
    app: App,
    sku: str,
    mig_profile: str | None,
    count: int,
    idle_stop: str | None,
    wait: bool,
    timeout: str,
    yes: bool,
    as_json: bool,
) -> None:
    """Launch GPUs or MIG slices: plan, price, confirm.

    Shows the plan with the hourly price from billing's price book and asks to confirm
    (-y does not ask); sends one Idempotency-Key however often the request is retried.
    With --wait, follows the allocation until it is running (exit 0) or ends otherwise
    (exit 10).
    """
    from gpucloud_cli.sdk.client import new_idempotency_key

    idle_s = _seconds("idle_stop", idle_stop) if idle_stop else None
    timeout_s = _seconds("timeout", timeout)
    scope = app.scope()
    plan, found = plan_for(
        scope.client.list_skus(),
        _prices(scope),
        sku,
        mig_profile,
        count,
        idle_s,
        scope.tenant_id,
        _now(),
    )
    plan = {**scope_json(scope), **plan}
    if not as_json:
        what = f"{count} x {sku}" + (f" MIG {mig_profile}" if mig_profile else "")
        price = (
            f"{format_money(found.hourly_micros, found.currency)} per hour"
            + (f" ({format_money(found.micros_per_gpu_hour)} each)" if count > 1 else "")
            if found
            else "no price in the price book yet (usage is billed once one exists)"
        )
        fields(
            [
                ("launch", what),
                ("project", f"{scope.context.name}"),
                ("price", price),
                ("free now", plan["available"]),
                ("idle stop", format_duration(idle_s) if idle_s else "never"),
            ],
            title="Plan",
        )
        if plan["available"] < count:
            note(f"[yellow]Only {plan['available']} free now: it may be rejected.[/yellow]")
    confirm("Launch?", yes=yes)
    key = new_idempotency_key()
    allocation = scope.client.create_allocation(
        scope.tenant_id,
        scope.project_id,
        sku,
        mig_profile=mig_profile,
        count=count,
        idle_stop_after_s=idle_s,
        idempotency_key=key,
    )
    allocation, reached, history = _follow(
        scope, allocation, "running", wait=wait, timeout_s=timeout_s, as_json=as_json
    )
    document = {
        "plan": plan,
        "idempotency_key": key,
        "waited": wait,
        "allocation": allocation.to_json(),
        "history": history,
    }
    if not reached:
        raise Unfinished(_unfinished(allocation, "running", timeout), document=document)
    if as_json:
        emit_json(document)
        return
    if wait:
        note(f"Allocation [bold]{allocation.id}[/bold] is running.")
        show_allocation(allocation)
    else:
        note(
            f"Allocation [bold]{allocation.id}[/bold] is {allocation.state}: "
            f"`gpucloud get {short_id(allocation.id)}` shows it."
        )


def _unfinished(allocation: Allocation, wanted: str, timeout: str) -> str:
    if allocation.state in ("rejected", "failed", "releasing", "released", "release_failed"):
        why = f" ({allocation.reason})" if allocation.reason else ""
        return f"allocation {allocation.id} ended {allocation.state}{why}, not {wanted}"
    return f"allocation {allocation.id} still {allocation.state} after {timeout}"


# ps, get


@click.command()
@click.option("-a", "--all", "everything", is_flag=True, help="Also released and rejected ones.")
@json_option
@pass_app
def ps(app: App, everything: bool, as_json: bool) -> None:
    """List the project's allocations.

    Live ones by default (not released, not rejected); --all lists every one.
    """
    from gpucloud_cli.sdk.models import FINAL_STATES

    scope = app.scope()
    allocations = [
        a
        for a in scope.client.iter_allocations(scope.tenant_id, scope.project_id)
        if everything or a.state not in FINAL_STATES
    ]
    if as_json:
        emit_json(
            {
                **scope_json(scope),
                "all": everything,
                "allocations": [a.to_json() for a in allocations],
            }
        )
        return
    table(
        ALLOCATION_COLUMNS,
        allocation_rows(allocations),
        empty="no live allocations" + ("" if everything else " (--all lists ended ones)"),
    )


@click.command()
@click.argument("allocation_id", metavar="ID")
@json_option
@pass_app
def get(app: App, allocation_id: str, as_json: bool) -> None:
    """Show one allocation.

    ID is the allocation's id, or its last (or first) 4+ hex digits: `gpucloud ps` shows
    the last 8.
    """
    scope = app.scope()
    found = scope.client.get_allocation(
        scope.tenant_id, scope.project_id, resolve_allocation(scope, allocation_id)
    )
    if as_json:
        emit_json({**scope_json(scope), "allocation": found.to_json()})
        return
    show_allocation(found)


# release, down


@click.command()
@click.argument("allocation_id", metavar="ID")
@click.option("--wait", is_flag=True, help="Follow it until it is released.")
@click.option(
    "--timeout",
    metavar="DURATION",
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="How long --wait waits.",
)
@json_option
@pass_app
def release(app: App, allocation_id: str, wait: bool, timeout: str, as_json: bool) -> None:
    """Release one allocation.

    Stops its workload and its billing; releasing one that is already releasing changes
    nothing. ID as for `gpucloud get`.
    """
    timeout_s = _seconds("timeout", timeout)
    scope = app.scope()
    target = resolve_allocation(scope, allocation_id)
    allocation = scope.client.release_allocation(scope.tenant_id, scope.project_id, target)
    allocation, reached, history = _follow(
        scope, allocation, "released", wait=wait, timeout_s=timeout_s, as_json=as_json
    )
    document = {
        **scope_json(scope),
        "waited": wait,
        "allocation": allocation.to_json(),
        "history": history,
    }
    if not reached:
        raise Unfinished(_unfinished(allocation, "released", timeout), document=document)
    if as_json:
        emit_json(document)
        return
    note(f"Allocation [bold]{allocation.id}[/bold] is {allocation.state}.")


@click.command()
@click.option("--wait", is_flag=True, help="Follow each until it is released.")
@click.option(
    "--timeout",
    metavar="DURATION",
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="How long --wait waits, per allocation.",
)
@click.option("-y", "--yes", is_flag=True, help="Release without asking.")
@json_option
@pass_app
def down(app: App, wait: bool, timeout: str, yes: bool, as_json: bool) -> None:
    """Release every live allocation of the project.

    Lists what it will release and asks first (-y does not ask). Allocations record no
    owner, so "mine" is every allocation of the current project.
    """
    from gpucloud_cli.sdk.models import RELEASABLE_STATES

    timeout_s = _seconds("timeout", timeout)
    scope = app.scope()
    targets = [
        a
        for a in scope.client.iter_allocations(scope.tenant_id, scope.project_id)
        if a.state in RELEASABLE_STATES
    ]
    if not targets:
        if as_json:
            emit_json({**scope_json(scope), "released": [], "failed": []})
        else:
            note("Nothing to release.")
        return
    if not as_json:
        table(ALLOCATION_COLUMNS, allocation_rows(targets), title="To release")
    confirm(f"Release these {len(targets)} allocations?", yes=yes)
    released: list[Allocation] = []
    failed: list[dict[str, Any]] = []
    for a in targets:
        try:
            released.append(
                scope.client.release_allocation(scope.tenant_id, scope.project_id, a.id)
            )
        except GpucloudError as exc:
            failed.append({"id": a.id, "error": exc.to_json()})
    released = [
        _follow(scope, a, "released", wait=wait, timeout_s=timeout_s, as_json=as_json)[0]
        for a in released
    ]
    document = {
        **scope_json(scope),
        "released": [a.to_json() for a in released],
        "failed": failed,
    }
    lingering = [a.id for a in released if wait and a.state != "released"]
    if failed or lingering:
        raise Unfinished(
            f"of {len(targets)}: {len(failed)} refused, {len(lingering)} not released in time",
            document=document,
        )
    if as_json:
        emit_json(document)
        return
    note(f"Released {len(released)} allocation{'s' if len(released) != 1 else ''}.")


def _bundle_line(b: LaunchedBundle) -> str:
    """The release an allocation runs, and what registry changed since the launch."""
    line = f"{b.app} {b.version} ({b.channel})"
    if b.yanked:
        return line + ": YANKED since launch, release it to stop it"
    if b.refusal:
        return line + f": no longer launchable ({b.refusal} since launch), release it to stop it"
    return line
