"""Dashboard, launch, the allocations list and the allocation page (with its live panel)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from litestar import Request, Response, get, post

from portal import figures
from portal.api import Api, ApiError, seg
from portal.sessions import Session
from portal.views.common import (
    billing_base,
    form_of,
    gpu_base,
    ok,
    projects_of,
    user_session,
)
from portal.web import FormErrors, api_of, redirect, render, session_of

IDLE_STOP_CHOICES = (
    ("", "never"),
    ("900", "after 15 minutes idle"),
    ("3600", "after 1 hour idle"),
    ("14400", "after 4 hours idle"),
    ("86400", "after 1 day idle"),
)


async def all_allocations(api: Api, session: Session, project_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = None
    while True:
        page = await api.get(f"{gpu_base(session, project_id)}/allocations", limit=500, after=after)
        items += page["items"]
        after = page.get("next_after")
        if not after:
            return items


async def price_book(api: Api, session: Session, currency: str | None = None) -> figures.PriceBook:
    prices = await api.get("/v1/billing/prices")
    items = prices["items"] if isinstance(prices, dict) else prices
    return figures.PriceBook.of(items, session.tenant_id, currency)


def _project(session: Session, projects: list[dict[str, Any]], wanted: str | None) -> str | None:
    ids = [p["id"] for p in projects]
    if wanted in ids:
        return wanted
    return session.project_id if session.project_id in ids else (ids[0] if ids else None)


@get("/", name="dashboard")
async def dashboard(request: Request[Any, Any, Any]) -> Response[Any]:
    if session_of(request).operator:
        return redirect("/operator/fleet")
    session = user_session(request)
    api = api_of(request)
    projects, balance = await api.many(
        projects_of(api, session), api.get(f"{billing_base(session)}/balance")
    )
    projects = projects if ok(projects) else []
    balance = balance if ok(balance) else None
    currency = balance["currency"] if balance else None
    lists = await api.many(*(all_allocations(api, session, p["id"]) for p in projects))
    book = await price_book(api, session, currency)
    names = {p["id"]: p["name"] for p in projects}
    live = [
        {**a, "project_name": names.get(a["project_id"], a["project_id"])}
        for found in lists
        if ok(found)
        for a in found
        if a["state"] in figures.LIVE_STATES
    ]
    burn = figures.burn_per_hour(live, book)
    runway = figures.runway_seconds(balance["available_micros"], burn) if balance else None
    low = bool(balance) and (
        balance["standing"] in ("low", "exhausted") or (runway is not None and runway < 3600)
    )
    return render(
        request,
        "dashboard.html",
        balance=balance,
        burn=burn,
        runway=runway,
        low=low,
        live=live,
        book=book,
        currency=currency or "USD",
    )


def _options(skus: list[dict[str, Any]], book: figures.PriceBook) -> list[dict[str, Any]]:
    """Every launchable choice: a whole GPU of each SKU, and each MIG profile."""
    options = []
    for sku in skus:
        options.append(
            {
                "value": sku["key"],
                "sku": sku["key"],
                "profile": None,
                "label": f"{sku['name']}, whole GPU ({sku['memory_gb']} GB)",
                "available": sku["gpus_free"],
                "hourly": book.hourly(sku["price_key"]),
                "price_key": sku["price_key"],
            }
        )
        for profile in sku["profiles"] if sku["mig_capable"] else ():
            options.append(
                {
                    "value": f"{sku['key']}/{profile['name']}",
                    "sku": sku["key"],
                    "profile": profile["name"],
                    "label": f"{sku['name']}, MIG {profile['name']} "
                    f"({profile['compute_slices']}/7 compute, "
                    f"{profile['memory_slices']}/8 memory)",
                    "available": profile["available"],
                    "hourly": book.hourly(profile["price_key"]),
                    "price_key": profile["price_key"],
                }
            )
    return options


def _count(raw: str | None) -> int:
    try:
        return max(1, int(raw or "1"))
    except ValueError:
        return 1


async def _launch_context(request: Request[Any, Any, Any]) -> dict[str, Any]:
    session = user_session(request)
    api = api_of(request)
    skus, projects, book = await asyncio.gather(
        api.get("/v1/gpu/skus"), projects_of(api, session), price_book(api, session)
    )
    skus = skus["items"] if isinstance(skus, dict) else skus
    # SKUs the fleet has no GPU of are noise in the picker (all of them when none has one).
    skus = [s for s in skus if s["gpus_total"] > 0] or skus
    return {
        "options": _options(skus, book),
        "projects": projects,
        "project_choices": [(p["id"], p["name"]) for p in projects],
    }


def _quote(options: list[dict[str, Any]], choice: str | None, count: int) -> dict[str, Any] | None:
    chosen = next((o for o in options if o["value"] == choice), None)
    if chosen is None:
        return None
    total = None if chosen["hourly"] is None else chosen["hourly"] * count
    return {**chosen, "count": count, "total": total}


@get("/launch", name="launch_page")
async def launch_page(request: Request[Any, Any, Any]) -> Response[Any]:
    context = await _launch_context(request)
    session = user_session(request)
    first = next((o["value"] for o in context["options"] if o["available"]), None)
    values = {"option": first or "", "count": "1", "idle": "", "project_id": session.project_id}
    return render(
        request,
        "launch.html",
        values=values,
        quote=_quote(context["options"], values["option"], 1),
        errors=FormErrors(),
        idle_choices=IDLE_STOP_CHOICES,
        idempotency_key=str(uuid.uuid4()),
        **context,
    )


@get("/launch/quote", name="launch_quote")
async def launch_quote(
    request: Request[Any, Any, Any], option: str | None = None, count: str | None = None
) -> Response[Any]:
    """The price per hour of the current choice, read again on every change (htmx)."""
    context = await _launch_context(request)
    return render(request, "_quote.html", quote=_quote(context["options"], option, _count(count)))


@post("/launch", name="launch")
async def launch(request: Request[Any, Any, Any]) -> Response[Any]:
    session = user_session(request)
    form = await form_of(request)
    raw = await request.form()
    key = str(raw.get("_idempotency_key") or uuid.uuid4())
    option, project_id = form.get("option", ""), form.get("project_id", "")
    sku, _, profile = option.partition("/")
    body: dict[str, Any] = {"sku": sku}
    if profile:
        body["mig_profile"] = profile
    errors, status = FormErrors(), 400
    try:
        body["count"] = int(form.get("count", "1"))
    except ValueError:
        errors = FormErrors.field("count", "a whole number")
    if form.get("idle"):
        body["idle_stop_after_s"] = int(form["idle"]) if form["idle"].isdigit() else form["idle"]
    if not sku:
        errors = FormErrors.field("option", "choose a GPU or a MIG profile")
    if not errors:
        try:
            created = await api_of(request).post(
                f"{gpu_base(session, project_id)}/allocations", body, key=key
            )
        except ApiError as exc:
            status = exc.status
            errors = FormErrors.of(
                exc, {"sku": "option", "mig_profile": "option", "idle_stop_after_s": "idle"}
            )
            if exc.status == 402:
                errors.fields.setdefault("option", "top up the balance first (Billing)")
        else:
            session.project_id = project_id
            return redirect(f"/projects/{seg(project_id)}/allocations/{seg(created['id'])}")
    context = await _launch_context(request)
    values = {
        "option": option,
        "count": form.get("count", "1"),
        "idle": form.get("idle", ""),
        "project_id": project_id,
    }
    return render(
        request,
        "launch.html",
        status_code=status,
        values=values,
        quote=_quote(context["options"], option, _count(form.get("count"))),
        errors=errors,
        idle_choices=IDLE_STOP_CHOICES,
        idempotency_key=str(uuid.uuid4()),
        **context,
    )


@get("/allocations", name="allocations")
async def allocations(request: Request[Any, Any, Any], project: str | None = None) -> Response[Any]:
    session = user_session(request)
    api = api_of(request)
    if project:  # the list and the project picker at once (another tenant's project: 404)
        projects, items = await asyncio.gather(
            projects_of(api, session), all_allocations(api, session, project)
        )
        project_id = project
    else:
        projects = await projects_of(api, session)
        project_id = _project(session, projects, None)
        items = await all_allocations(api, session, project_id) if project_id else []
    items.reverse()  # newest first
    return render(
        request,
        "allocations.html",
        projects=projects,
        project_id=project_id,
        items=items,
    )


async def _allocation(request: Request[Any, Any, Any], project_id: str, allocation_id: str):
    session = user_session(request)
    api = api_of(request)
    allocation, book = await asyncio.gather(
        api.get(f"{gpu_base(session, project_id)}/allocations/{seg(allocation_id)}"),
        price_book(api, session),
    )
    return {
        "a": allocation,
        "book": book,
        "hourly": figures.allocation_hourly(allocation, book),
        "cost": figures.cost_so_far(allocation, book),
        "ran": figures.ran_seconds(allocation),
        "gpus": figures.gpu_pictures(allocation["instances"]),
        "terminal": allocation["state"] in figures.TERMINAL_STATES,
        "releasable": allocation["state"] in ("scheduled", "provisioning", "running"),
        # A fresh key per drawing of the "Open terminal" form (the step-up replay keeps it).
        "terminal_key": str(uuid.uuid4()),
    }


# terminal-gateway's final session states (docs/terminal.md): nothing to attach to.
TERMINAL_SESSION_FINAL = ("closed", "expired", "revoked")


async def _terminal_panel(
    api: Api, allocation: dict[str, Any], terminal_id: str | None
) -> dict[str, Any]:
    """The allocation page's terminal: the live session named by `?terminal=` (one of the
    user's own on this allocation, read from terminal-gateway) for the page's script to
    attach to, or how it ended. The connect token is never part of the page: the script
    asks the portal for a fresh one (`.../terminal/{id}/attach`) each time it connects."""
    panel: dict[str, Any] = {"live": None, "ended": None, "errors": FormErrors()}
    if not terminal_id or allocation["state"] != "running":
        return panel
    gone = FormErrors(
        "No such terminal session", "It is not one of yours on this allocation: open a new one."
    )
    try:
        uuid.UUID(terminal_id)
        found = await api.get(f"/v1/terminal/sessions/{seg(terminal_id)}")
    except ValueError:
        panel["errors"] = gone
        return panel
    except ApiError as exc:
        panel["errors"] = gone if exc.status == 404 else FormErrors.of(exc)
        return panel
    if found.get("allocation_id") != allocation["id"]:
        panel["errors"] = gone
    elif found["state"] in TERMINAL_SESSION_FINAL:
        panel["ended"] = found
    else:
        panel["live"] = found
    return panel


async def allocation_response(
    request: Request[Any, Any, Any],
    project_id: str,
    allocation_id: str,
    *,
    terminal_id: str | None = None,
    terminal_errors: FormErrors | None = None,
    status_code: int = 200,
) -> Response[Any]:
    """The allocation page; with a live terminal session it loads xterm.js and the
    terminal's script (and allows the style elements xterm creates: `style_nonce`)."""
    context = await _allocation(request, project_id, allocation_id)
    panel = await _terminal_panel(api_of(request), context["a"], terminal_id)
    if terminal_errors:
        panel["errors"] = terminal_errors
    return render(
        request,
        "allocation.html",
        status_code=status_code,
        style_nonce=panel["live"] is not None,
        project_id=project_id,
        term=panel,
        **context,
    )


@get("/projects/{project_id:str}/allocations/{allocation_id:str}", name="allocation")
async def allocation_page(
    request: Request[Any, Any, Any],
    project_id: str,
    allocation_id: str,
    terminal: str | None = None,
) -> Response[Any]:
    return await allocation_response(request, project_id, allocation_id, terminal_id=terminal)


@get("/projects/{project_id:str}/allocations/{allocation_id:str}/live", name="allocation_live")
async def allocation_live(
    request: Request[Any, Any, Any], project_id: str, allocation_id: str
) -> Response[Any]:
    """The allocation's live panel, polled by htmx until the state is final."""
    context = await _allocation(request, project_id, allocation_id)
    return render(request, "_allocation_live.html", project_id=project_id, **context)


@post(
    "/projects/{project_id:str}/allocations/{allocation_id:str}/release", name="release_allocation"
)
async def release_allocation(
    request: Request[Any, Any, Any], project_id: str, allocation_id: str
) -> Response[Any]:
    session = user_session(request)
    path = f"{gpu_base(session, project_id)}/allocations/{seg(allocation_id)}/release"
    await api_of(request).post(path)
    return redirect(f"/projects/{seg(project_id)}/allocations/{seg(allocation_id)}")


ROUTES = [
    dashboard,
    launch_page,
    launch_quote,
    launch,
    allocations,
    allocation_page,
    allocation_live,
    release_allocation,
]
