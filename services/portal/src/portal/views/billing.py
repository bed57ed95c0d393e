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
from portal.sessions import PendingTopUp, Session
from portal.views.common import billing_base, form_of, ok, user_session
from portal.web import FormErrors, api_of, redirect, render

CHART_DAYS = 14
LEDGER_PAGES = 5  # billing lists the ledger oldest first and has no payments list route
MOVEMENT_KINDS = ("top_up", "refund", "reversal", "grant")
# A Stripe payment the customer may still confirm (again, after a declined card).
STRIPE_CONFIRMABLE = ("initiated", "pending", "failed")
# How long a failed payment's status is still polled (every 3 s): about a minute.
FAILED_POLLS = 20


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
    secret = payment.pop("client_secret", None)
    if secret and _stripe_key(request):
        # Stripe's confirm step: the page with the Payment Element, from this answer (the
        # secret goes into no URL, so no redirect); the key is kept to ask again on a reload.
        session.top_up = PendingTopUp(payment_id=payment["id"], key=key, amount_micros=amount)
        return _payment_response(request, payment, client_secret=secret)
    return redirect(f"/billing/payments/{seg(payment['id'])}")


def _stripe_key(request: Request[Any, Any, Any]) -> str | None:
    return request.app.state.portal.stripe_publishable_key


async def _payment(request: Request[Any, Any, Any], payment_id: str) -> dict[str, Any]:
    session = user_session(request)
    return await api_of(request).get(f"{billing_base(session)}/payments/{seg(payment_id)}")


async def _client_secret(request: Request[Any, Any, Any], payment: dict[str, Any]) -> str | None:
    """The PaymentIntent's client_secret again, for a payment this session created and
    Stripe has not settled: billing answers the same top-up request with the same
    Idempotency-Key with the secret read again from Stripe (docs/billing.md, "Confirming a
    Stripe top-up"). None when this session did not create it, or billing cannot say."""
    session = user_session(request)
    pending = session.top_up
    if (
        not _stripe_key(request)
        or pending is None
        or pending.payment_id != payment["id"]
        or payment["provider"] != "stripe"
        or payment["status"] not in STRIPE_CONFIRMABLE
    ):
        return None
    try:
        again = await api_of(request).post(
            f"{billing_base(session)}/payments",
            {"amount_micros": pending.amount_micros},
            key=pending.key,
        )
    except ApiError:
        return None
    return again.get("client_secret") if again.get("id") == payment["id"] else None


def _payment_response(
    request: Request[Any, Any, Any],
    payment: dict[str, Any],
    *,
    client_secret: str | None = None,
    errors: FormErrors | None = None,
    refund: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response[Any]:
    """The payment page. With Stripe configured and the PaymentIntent's client_secret, it
    mounts Stripe.js's Payment Element (static/stripe-confirm.js reads the secret from its
    form's data attribute) and its CSP allows Stripe's origins; otherwise neither."""
    stripe = bool(client_secret and _stripe_key(request))
    return render(
        request,
        "payment.html",
        status_code=status_code,
        stripe=stripe,
        p=payment,
        errors=errors or FormErrors(),
        refund=refund,
        idempotency_key=str(uuid.uuid4()),
        confirm={"key": _stripe_key(request), "secret": client_secret} if stripe else None,
        failed_polls=0,
        poll_failed=True,
        confirm_mounted=stripe,
    )


@get("/billing/payments/{payment_id:str}", name="payment")
async def payment_page(
    request: Request[Any, Any, Any],
    payment_id: str,
    payment_intent_client_secret: str | None = None,
) -> Response[Any]:
    if payment_intent_client_secret is not None:
        # Stripe's return after a redirect (3-D Secure) appends the secret to the URL: drop
        # it at once, so it stays in no history entry, page or referrer of ours.
        return redirect(f"/billing/payments/{seg(payment_id)}")
    payment = await _payment(request, payment_id)
    return _payment_response(request, payment, client_secret=await _client_secret(request, payment))


@get("/billing/payments/{payment_id:str}/live", name="payment_live")
async def payment_live(
    request: Request[Any, Any, Any], payment_id: str, failed_polls: int = 0
) -> Response[Any]:
    """The payment's status, polled every second while it is open. A failed payment is
    polled a while longer (every 3 s, FAILED_POLLS times): with Stripe the customer may
    confirm the same PaymentIntent again with another card, and it goes failed -> settled."""
    payment = await _payment(request, payment_id)
    polls = failed_polls + 1 if payment["status"] == "failed" else 0
    return render(
        request,
        "_payment_live.html",
        p=payment,
        errors=FormErrors(),
        idempotency_key=str(uuid.uuid4()),
        failed_polls=polls,
        poll_failed=polls < FAILED_POLLS,
        # the page mounts the Payment Element wherever Stripe is configured and billing
        # gives the secret again (a payment this session created)
        confirm_mounted=bool(_stripe_key(request)) and payment["provider"] == "stripe",
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
    return _payment_response(request, payment, errors=errors, refund=made, status_code=status)


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
