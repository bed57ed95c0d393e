"""Sign-in (password, then the second factor when iam answers mfa_required), sign-out, the
operator's sign-in, TOTP enrollment with a QR code and recovery codes, and the step-up
confirmation that replays the action it interrupted."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import segno
from litestar import Request, Response, get, post

from portal.api import (
    ApiError,
    AuthError,
    GpucloudError,
    SessionEnded,
    Tokens,
    apply_tokens,
    token_grant,
)
from portal.sessions import PENDING_SIGN_IN_S, PendingSignIn, Session, new_session
from portal.views.common import (
    STEP_UP_ACTIONS,
    form_of,
    open_replay,
    projects_of,
    step_up_prompt,
    tenant_base,
)
from portal.web import (
    FormErrors,
    WrongSessionKind,
    api_of,
    redirect,
    render,
    replace_session,
    session_of,
)


def _safe_next(target: str | None) -> str:
    """Only a path of this site: never an absolute URL or //host (an open redirect)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


@get("/sign-in", name="sign_in_page")
async def sign_in_page(request: Request[Any, Any, Any], next: str | None = None) -> Response[Any]:
    session = session_of(request)
    if session.signed_in:
        return redirect(_safe_next(next))
    return render(request, "sign_in.html", errors=FormErrors(), values={}, next=_safe_next(next))


async def _signed_in(request: Request[Any, Any, Any], tokens: Tokens, email: str) -> Session:
    """A fresh session (new id and CSRF token: nothing from before sign-in carries over)."""
    session = new_session()
    session.kind = "user"
    session.email = email
    apply_tokens(session, tokens, time.time())
    replace_session(request, session)
    if session.tenant_id:
        api = api_of(request)
        tenant, projects = await api.many(api.get(tenant_base(session)), projects_of(api, session))
        if isinstance(tenant, dict):
            session.tenant_slug, session.tenant_name = tenant["slug"], tenant["name"]
        if isinstance(projects, list) and projects:
            session.project_id = projects[0]["id"]
    return session


def _sign_in_error(error: ApiError) -> FormErrors:
    errors = FormErrors.of(error)
    if error.slug == "invalid-grant":
        errors.fields.setdefault("password", "the email, password or tenant is not right")
    return errors


@post("/sign-in", name="sign_in")
async def sign_in(request: Request[Any, Any, Any]) -> Response[Any]:
    form = await form_of(request)
    target = _safe_next(form.get("next"))
    email, password = form.get("email", "").strip(), form.get("password", "")
    tenant = form.get("tenant", "").strip() or None
    values = {"email": email, "tenant": tenant or ""}
    if not email or not password:
        missing = "email" if not email else "password"
        return render(
            request,
            "sign_in.html",
            status_code=400,
            errors=FormErrors.field(missing, "required"),
            values=values,
            next=target,
        )
    grant = {"grant_type": "password", "username": email, "password": password}
    if tenant:
        grant["tenant"] = tenant
    try:
        tokens = await token_grant(request.app.state.http, grant)
    except ApiError as exc:
        if exc.slug == "mfa-required":
            session = session_of(request)
            session.pending = PendingSignIn(
                email=email,
                password=password,
                tenant=tenant,
                expires=time.time() + PENDING_SIGN_IN_S,
            )
            return render(request, "sign_in_otp.html", errors=FormErrors(), next=target)
        return render(
            request,
            "sign_in.html",
            status_code=exc.status,
            errors=_sign_in_error(exc),
            values=values,
            next=target,
        )
    session = await _signed_in(request, tokens, email)
    return redirect("/account" if session.restricted else target)


@post("/sign-in/otp", name="sign_in_otp")
async def sign_in_otp(request: Request[Any, Any, Any]) -> Response[Any]:
    form = await form_of(request)
    target = _safe_next(form.get("next"))
    pending = session_of(request).pending
    if pending is None:
        errors = FormErrors("Start again", "the sign-in waited too long for its code", {})
        return render(
            request, "sign_in.html", status_code=400, errors=errors, values={}, next=target
        )
    code = form.get("otp", "").strip()
    if not code:
        return render(
            request,
            "sign_in_otp.html",
            status_code=400,
            errors=FormErrors.field("otp", "required"),
            next=target,
        )
    grant = {
        "grant_type": "password",
        "username": pending.email,
        "password": pending.password,
        "otp": code,
    }
    if pending.tenant:
        grant["tenant"] = pending.tenant
    try:
        tokens = await token_grant(request.app.state.http, grant)
    except ApiError as exc:
        errors = FormErrors.of(exc)
        if exc.slug == "invalid-grant":
            errors.fields.setdefault("otp", "the code is not valid (or was used already)")
        return render(
            request, "sign_in_otp.html", status_code=exc.status, errors=errors, next=target
        )
    await _signed_in(request, tokens, pending.email)
    return redirect(target)


@post("/sign-out", name="sign_out")
async def sign_out(request: Request[Any, Any, Any]) -> Response[Any]:
    """iam has no route to revoke a refresh token. Rotating it once and dropping the new
    pair spends it: any copy of this cookie presenting it later is a reuse, which makes
    iam revoke the whole family. The access token lives out its 5 minutes."""
    session = session_of(request)
    if session.kind == "user" and session.refresh_token:
        try:
            await token_grant(
                request.app.state.http,
                {"grant_type": "refresh_token", "refresh_token": session.refresh_token},
            )
        except GpucloudError:
            pass
    replace_session(request, new_session())
    return redirect("/sign-in")


@get("/operator/sign-in", name="operator_sign_in_page")
async def operator_sign_in_page(request: Request[Any, Any, Any]) -> Response[Any]:
    return render(request, "operator_sign_in.html", errors=FormErrors())


@post("/operator/sign-in", name="operator_sign_in")
async def operator_sign_in(request: Request[Any, Any, Any]) -> Response[Any]:
    """Until operators are iam users (platform.operate is the operator token's alone
    today), an operator signs in with the operator token; it is checked with one operator
    read and kept sealed in the session cookie like a user's tokens."""
    form = await form_of(request)
    token = form.get("token", "").strip()
    if not token:
        return render(
            request,
            "operator_sign_in.html",
            status_code=400,
            errors=FormErrors.field("token", "required"),
        )
    session = new_session()
    session.kind = "operator"
    session.access_token = token
    session.access_expires = time.time() + request.app.state.portal.session_max_age_s
    session.email = "operator"
    replace_session(request, session)
    try:
        await api_of(request).get("/v1/gpu/nodes")
    except ApiError as exc:
        replace_session(request, new_session())
        errors = FormErrors.of(exc)
        errors.fields.setdefault("token", "not accepted as the operator token")
        return render(request, "operator_sign_in.html", status_code=exc.status, errors=errors)
    return redirect("/operator/fleet")


# Account: MFA


def _user(request: Request[Any, Any, Any]) -> Session:
    session = session_of(request)
    if session.operator:
        raise WrongSessionKind("This is an operator session: the account page is a user's.")
    if not session.signed_in:
        raise SessionEnded("sign in to continue")
    return session


@get("/account", name="account")
async def account(request: Request[Any, Any, Any]) -> Response[Any]:
    _user(request)
    mfa = await api_of(request).get("/v1/iam/me/mfa")
    return render(request, "account.html", mfa=mfa, errors=FormErrors())


def qr_svg(uri: str) -> str:
    return segno.make(uri, error="m").svg_inline(
        scale=4, dark="#000", light="#fff", title="QR code of the authenticator key"
    )


@post("/account/mfa/totp", name="enroll_totp")
async def enroll_totp(request: Request[Any, Any, Any]) -> Response[Any]:
    _user(request)
    try:
        enrollment = await api_of(request).post("/v1/iam/me/mfa/totp")
    except ApiError as exc:
        mfa = await api_of(request).get("/v1/iam/me/mfa")
        return render(
            request, "account.html", status_code=exc.status, mfa=mfa, errors=FormErrors.of(exc)
        )
    return render(
        request,
        "enroll_totp.html",
        secret=enrollment["secret"],
        otpauth_uri=enrollment["otpauth_uri"],
        qr=qr_svg(enrollment["otpauth_uri"]),
        errors=FormErrors(),
    )


@post("/account/mfa/totp/verify", name="activate_totp")
async def activate_totp(request: Request[Any, Any, Any]) -> Response[Any]:
    _user(request)
    form = await form_of(request)
    code = form.get("code", "").strip()
    secret, uri = form.get("secret", ""), form.get("otpauth_uri", "")
    try:
        if not code:
            raise ValueError
        body = await api_of(request).post("/v1/iam/me/mfa/totp/verify", {"code": code})
    except (ApiError, ValueError) as exc:
        errors = (
            FormErrors.of(exc, {"code": "code"})
            if isinstance(exc, ApiError)
            else FormErrors.field("code", "required")
        )
        if isinstance(exc, ApiError) and "code" not in errors.fields:
            errors.fields["code"] = exc.detail or exc.title
        return render(
            request,
            "enroll_totp.html",
            status_code=getattr(exc, "status", 400),
            secret=secret,
            otpauth_uri=uri,
            qr=qr_svg(uri) if uri.startswith("otpauth://") else "",
            errors=errors,
        )
    return render(request, "recovery_codes.html", codes=body["recovery_codes"])


# Step-up


@post("/step-up", name="step_up")
async def step_up(request: Request[Any, Any, Any]) -> Response[Any]:
    """iam satisfies a step-up only with a new sign-in carrying the second factor (there is
    no code-only grant), so the prompt asks for the password and the code; then the
    interrupted action runs again with the fresh token."""
    session = _user(request)
    raw = await request.form()
    replay = open_replay(request, str(raw.get("_replay", "")))
    if replay is None:
        return render(
            request,
            "error.html",
            status_code=400,
            status=400,
            title="This confirmation has expired",
            detail="Go back and try the action again.",
        )
    action, original = replay
    password, code = str(raw.get("password", "")), str(raw.get("otp", "")).strip()
    missing = "password" if not password else ("otp" if not code else None)
    if missing:
        return step_up_prompt(
            request, action, original, None, FormErrors.field(missing, "required")
        )
    grant = {
        "grant_type": "password",
        "username": session.email or "",
        "password": password,
        "otp": code,
        "tenant": session.tenant_id or "",
    }
    try:
        tokens = await token_grant(request.app.state.http, grant)
    except ApiError as exc:
        errors = FormErrors.of(exc)
        if isinstance(exc, AuthError) or exc.slug in ("invalid-grant", "mfa-required"):
            errors.fields.setdefault("otp", "the password or the code is not right")
        return step_up_prompt(request, action, original, None, errors)
    apply_tokens(session, tokens, time.time())
    return await STEP_UP_ACTIONS[action](request, original)


ROUTES = [
    sign_in_page,
    sign_in,
    sign_in_otp,
    sign_out,
    operator_sign_in_page,
    operator_sign_in,
    account,
    enroll_totp,
    activate_totp,
    step_up,
]
