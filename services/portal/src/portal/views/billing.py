"""Billing: balance, top-up through the configured payment provider (the sandbox in
devstack), usage per day and per price key, monthly statements (HTML and CSV), payments and
refunds."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from litestar import Request, Response, get, post

from portal import figures
from portal.api import Api, ApiError, seg
from portal.sessions import Session
from portal.views.common import billing_base, form_of, ok, user_session
from portal.web import FormErrors, api_of, redirect, render

CHART_DAYS = 14
LEDGER_PAGES = 5  # billing lists the ledger oldest first and has no payments list route
MOVEMENT_KINDS = ("top_up", "refund", "reversal", "grant")


async def _usage_per_day(api: Api, session: Session, now: dt.datetime):
    windows = figures.day_windows(now, CHART_DAYS)
    reports = await api.many(
        *(
            api.get(
                f"{billing_base(session)}/usage", since=start.isoformat(), until=end.isoformat()
            )
            for _, start, end in windows
        )
    )
    days = []
    for (day, _, _), report in zip(windows, reports, strict=True):
        per_key: dict[str, int] = {}
        if ok(report):
            for item in report["items"]:
                key = item["price_key"] or "other"
                per_key[key] = per_key.get(key, 0) + max(0, item["net_micros"])
        days.append((day, per_key))
    return days


async def _movements(api: Api, session: Session) -> tuple[list[dict[str, Any]], bool]:
    """Top-ups, refunds, reversals and grants from the ledger, newest first; True when the
    ledger had more pages than were read."""
    found, after = [], 0
    for _ in range(LEDGER_PAGES):
        page = await api.get(f"{billing_base(session)}/ledger", after=after, limit=1000)
        found += [e for e in page["items"] if e["kind"] in MOVEMENT_KINDS]
        after = page.get("next_after")
        if after is None:
            return found[::-1], False
    return found[::-1], True


@get("/billing", name="billing")
async def billing(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _billing_page(request, FormErrors(), {}, 200)


async def _billing_page(
    request: Request[Any, Any, Any], errors: FormErrors, values: dict[str, str], status: int
) -> Response[Any]:
    session = user_session(request)
    api = api_of(request)
    now = dt.datetime.now(dt.UTC)
    balance = await api.get(f"{billing_base(session)}/balance")
    days, (movements, truncated), month_usage = await _gather(api, session, now)
    return render(
        request,
        "billing.html",
        status_code=status,
        balance=balance,
        chart=figures.usage_chart(days),
        days=days,
        month_usage=month_usage,
        movements=movements,
        truncated=truncated,
        months=figures.recent_months(now),
        errors=errors,
        values=values,
        idempotency_key=str(uuid.uuid4()),
    )


async def _gather(api: Api, session: Session, now: dt.datetime):
    days, movements, month_usage = await api.many(
        _usage_per_day(api, session, now),
        _movements(api, session),
        api.get(
            f"{billing_base(session)}/usage",
            since=now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).isoformat(),
            until=(now + dt.timedelta(seconds=1)).isoformat(),
        ),
    )
    for result in (days, movements, month_usage):
        if not ok(result):
            raise result
    return days, movements, month_usage


@post("/billing/top-up", name="top_up")
async def top_up(request: Request[Any, Any, Any]) -> Response[Any]:
    session = user_session(request)
    form = await form_of(request)
    raw = await request.form()
    key = str(raw.get("_idempotency_key") or uuid.uuid4())
    try:
        amount = figures.parse_money(form.get("amount", ""))
    except ValueError as exc:
        return await _billing_page(request, FormErrors.field("amount", str(exc)), form, 400)
    try:
        payment = await api_of(request).post(
            f"{billing_base(session)}/payments", {"amount_micros": amount}, key=key
        )
    except ApiError as exc:
        errors = FormErrors.of(exc, {"amount_micros": "amount"})
        return await _billing_page(request, errors, form, exc.status)
    return redirect(f"/billing/payments/{seg(payment['id'])}")


async def _payment(request: Request[Any, Any, Any], payment_id: str) -> dict[str, Any]:
    session = user_session(request)
    return await api_of(request).get(f"{billing_base(session)}/payments/{seg(payment_id)}")


@get("/billing/payments/{payment_id:str}", name="payment")
async def payment_page(request: Request[Any, Any, Any], payment_id: str) -> Response[Any]:
    payment = await _payment(request, payment_id)
    return render(
        request,
        "payment.html",
        p=payment,
        errors=FormErrors(),
        refund=None,
        idempotency_key=str(uuid.uuid4()),
    )


@get("/billing/payments/{payment_id:str}/live", name="payment_live")
async def payment_live(request: Request[Any, Any, Any], payment_id: str) -> Response[Any]:
    payment = await _payment(request, payment_id)
    return render(
        request,
        "_payment_live.html",
        p=payment,
        errors=FormErrors(),
        idempotency_key=str(uuid.uuid4()),
    )


@post("/billing/payments/{payment_id:str}/refund", name="refund")
async def refund(request: Request[Any, Any, Any], payment_id: str) -> Response[Any]:
    session = user_session(request)
    form = await form_of(request)
    raw = await request.form()
    body: dict[str, Any] = {}
    errors = FormErrors()
    if form.get("amount", "").strip():
        try:
            body["amount_micros"] = figures.parse_money(form["amount"])
        except ValueError as exc:
            errors = FormErrors.field("amount", str(exc))
    made = None
    status = 400 if errors else 200
    if not errors:
        try:
            made = await api_of(request).post(
                f"{billing_base(session)}/payments/{seg(payment_id)}/refunds",
                body,
                key=str(raw.get("_idempotency_key") or uuid.uuid4()),
            )
        except ApiError as exc:
            errors, status = FormErrors.of(exc, {"amount_micros": "amount"}), exc.status
    payment = await _payment(request, payment_id)
    return render(
        request,
        "payment.html",
        status_code=status,
        p=payment,
        errors=errors,
        refund=made,
        idempotency_key=str(uuid.uuid4()),
    )


@get("/billing/statements/{month:str}", name="statement")
async def statement(request: Request[Any, Any, Any], month: str) -> Response[Any]:
    session = user_session(request)
    if month.endswith(".csv"):
        month = month.removesuffix(".csv")
        response = await api_of(request).request(
            "GET", f"{billing_base(session)}/statements/{seg(month)}", params={"format": "csv"}
        )
        return Response(
            response.content,
            media_type="text/csv",
            headers={
                "content-disposition": f'attachment; filename="statement-{month}.csv"',
                "cache-control": "no-store",
            },
        )
    body = await api_of(request).get(f"{billing_base(session)}/statements/{seg(month)}")
    return render(request, "statement.html", s=body, month=month)


ROUTES = [billing, top_up, payment_page, payment_live, refund, statement]
