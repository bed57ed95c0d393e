"""Operator pages: the fleet (nodes, cordon/uncordon/drain, availability per SKU and MIG
profile), tenants (suspend; a tenant's projects and their quotas) and the price book.

gpuaas has no route that lists a node's GPUs or their MIG layouts yet (GET /v1/gpu/nodes
gives each node's SKU and GPU count); the fleet page shows what exists and says so."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from litestar import Request, Response, get, post

from portal import figures
from portal.api import ApiError, SessionEnded, seg
from portal.sessions import Session
from portal.views.common import form_of
from portal.web import FormErrors, WrongSessionKind, api_of, redirect, render, session_of

NODE_ACTIONS = ("cordon", "uncordon", "drain")


def operator_session(request: Request[Any, Any, Any]) -> Session:
    session = session_of(request)
    if session.signed_in and not session.operator:
        raise WrongSessionKind("Operator pages need the operator sign-in (/operator/sign-in).")
    if not session.operator:
        raise SessionEnded("sign in as an operator")
    return session


@get("/operator/fleet", name="fleet")
async def fleet(request: Request[Any, Any, Any]) -> Response[Any]:
    operator_session(request)
    api = api_of(request)
    nodes, skus = await asyncio.gather(api.get("/v1/gpu/nodes"), api.get("/v1/gpu/skus"))
    nodes = nodes["items"] if isinstance(nodes, dict) else nodes
    skus = skus["items"] if isinstance(skus, dict) else skus
    return render(request, "operator_fleet.html", nodes=nodes, skus=skus, actions=NODE_ACTIONS)


@post("/operator/nodes/{node_id:str}/{action:str}", name="node_action")
async def node_action(request: Request[Any, Any, Any], node_id: str, action: str) -> Response[Any]:
    operator_session(request)
    if action not in NODE_ACTIONS:
        return render(
            request, "error.html", status_code=404, status=404, title="Not found", detail=None
        )
    await api_of(request).post(f"/v1/gpu/nodes/{seg(node_id)}/{action}")
    return redirect("/operator/fleet")


@get("/operator/tenants", name="tenants")
async def tenants(request: Request[Any, Any, Any], after: str | None = None) -> Response[Any]:
    operator_session(request)
    page = await api_of(request).get("/v1/iam/tenants", limit=100, after=after)
    return render(
        request, "operator_tenants.html", items=page["items"], next_after=page.get("next_after")
    )


async def _tenant_page(request, tenant_id: str, errors=None, status=200) -> Response[Any]:
    operator_session(request)
    api = api_of(request)
    tenant, projects = await asyncio.gather(
        api.get(f"/v1/iam/tenants/{seg(tenant_id)}"),
        api.get(f"/v1/iam/tenants/{seg(tenant_id)}/projects"),
    )
    projects = projects["items"] if isinstance(projects, dict) else projects
    quotas = await api.many(
        *(
            api.get(f"/v1/gpu/tenants/{seg(tenant_id)}/projects/{seg(p['id'])}/quota")
            for p in projects
        )
    )
    rows = [
        {**p, "quota": q if not isinstance(q, BaseException) else None}
        for p, q in zip(projects, quotas, strict=True)
    ]
    return render(
        request,
        "operator_tenant.html",
        status_code=status,
        tenant=tenant,
        projects=rows,
        errors=errors or FormErrors(),
    )


@get("/operator/tenants/{tenant_id:str}", name="tenant")
async def tenant(request: Request[Any, Any, Any], tenant_id: str) -> Response[Any]:
    return await _tenant_page(request, tenant_id)


@post("/operator/tenants/{tenant_id:str}/suspend", name="suspend_tenant")
async def suspend_tenant(request: Request[Any, Any, Any], tenant_id: str) -> Response[Any]:
    operator_session(request)
    form = await form_of(request)
    try:
        await api_of(request).post(
            f"/v1/iam/tenants/{seg(tenant_id)}/suspend", {"reason": form.get("reason", "")}
        )
    except ApiError as exc:
        return await _tenant_page(request, tenant_id, FormErrors.of(exc), exc.status)
    return redirect(f"/operator/tenants/{seg(tenant_id)}")


@post("/operator/tenants/{tenant_id:str}/projects/{project_id:str}/quota", name="set_quota")
async def set_quota(
    request: Request[Any, Any, Any], tenant_id: str, project_id: str
) -> Response[Any]:
    operator_session(request)
    form = await form_of(request)
    try:
        value = int(form.get("max_compute_slices", ""))
    except ValueError:
        errors = FormErrors.field("max_compute_slices", "a whole number of compute slices")
        return await _tenant_page(request, tenant_id, errors, 400)
    try:
        await api_of(request).put(
            f"/v1/gpu/tenants/{seg(tenant_id)}/projects/{seg(project_id)}/quota",
            {"max_compute_slices": value},
        )
    except ApiError as exc:
        return await _tenant_page(request, tenant_id, FormErrors.of(exc), exc.status)
    return redirect(f"/operator/tenants/{seg(tenant_id)}")


async def _prices_page(request, errors=None, values=None, status=200) -> Response[Any]:
    operator_session(request)
    prices = await api_of(request).get("/v1/billing/prices")
    items = prices["items"] if isinstance(prices, dict) else prices
    items = sorted(items, key=lambda p: (p["price_key"], p["effective_from"]), reverse=False)
    return render(
        request,
        "operator_prices.html",
        status_code=status,
        items=items,
        errors=errors or FormErrors(),
        values=values or {"effective_from": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M")},
    )


@get("/operator/prices", name="prices")
async def prices(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _prices_page(request)


@post("/operator/prices", name="create_price")
async def create_price(request: Request[Any, Any, Any]) -> Response[Any]:
    operator_session(request)
    form = await form_of(request)
    try:
        per_hour = figures.parse_money(form.get("per_hour", ""))
    except ValueError as exc:
        return await _prices_page(request, FormErrors.field("per_hour", str(exc)), form, 400)
    effective = form.get("effective_from", "")
    try:
        moment = dt.datetime.fromisoformat(effective)
    except ValueError:
        errors = FormErrors.field("effective_from", "a date and time (UTC)")
        return await _prices_page(request, errors, form, 400)
    body: dict[str, Any] = {
        "price_key": form.get("price_key", "").strip(),
        "micros_per_gpu_hour": per_hour,
        "effective_from": (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).isoformat(),
        "currency": form.get("currency", "USD").strip() or "USD",
    }
    if form.get("tenant_id", "").strip():
        body["tenant_id"] = form["tenant_id"].strip()
    try:
        await api_of(request).post("/v1/billing/prices", body)
    except ApiError as exc:
        aliases = {"micros_per_gpu_hour": "per_hour"}
        return await _prices_page(request, FormErrors.of(exc, aliases), form, exc.status)
    return redirect("/operator/prices")


ROUTES = [
    fleet,
    node_action,
    tenants,
    tenant,
    suspend_tenant,
    set_quota,
    prices,
    create_price,
]
