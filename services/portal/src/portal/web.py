"""The request plumbing every page shares: the session cookie, CSRF, rendering, security
headers, and error pages (an API's problem becomes an HTML page or a message at a field,
never a stack trace)."""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import jinja2
from litestar import Request, Response
from litestar.datastructures import State
from litestar.exceptions import HTTPException, NotFoundException
from litestar.response import Redirect
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from portal import figures, tables
from portal.api import Api, ApiError, NetworkError, Refresher, SessionEnded
from portal.nav import current, nav_for
from portal.sessions import COOKIE, SECURE_COOKIE, Session, new_session, seal, unseal
from portal.settings import PortalSettings

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).parent / "templates"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "_csrf"
CSRF_HEADER = "x-csrf-token"

# htmx is loaded from 'self' with eval off (its meta config); inline SVG needs no source.
# `connect-src 'self'` covers the terminal's WebSocket (ws:/wss: of this origin, CSP 3).
CSP = (
    "default-src 'self'; script-src 'self'{scripts}; style-src 'self'{styles}; "
    "img-src 'self' data:; connect-src 'self'{connects}; {frames}object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# The payment page with Stripe configured (only it): Stripe.js from its own origin (Stripe
# requires it be loaded from js.stripe.com, never bundled or hosted), its Payment Element's
# frames, and the calls it makes (Stripe's CSP guide: api.stripe.com for connect,
# hooks.stripe.com for 3-D Secure frames).
STRIPE_JS = "https://js.stripe.com"
STRIPE_SOURCES = {
    "scripts": f" {STRIPE_JS}",
    "connects": f" {STRIPE_JS} https://api.stripe.com",
    "frames": f"frame-src {STRIPE_JS} https://hooks.stripe.com; ",
}


def csp(styles: str = "", stripe: bool = False) -> str:
    sources = STRIPE_SOURCES if stripe else {"scripts": "", "connects": "", "frames": ""}
    return CSP.format(styles=styles, **sources)


SECURITY_HEADERS = {
    "content-security-policy": csp(),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(("html", "svg")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(
        money=figures.money,
        when=figures.when,
        ago=figures.ago,
        duration=figures.duration,
        pair=lambda value: (value, value),
    )
    env.globals["figures"] = figures
    env.globals["is_current"] = current
    env.globals["tables"] = tables
    return env


ENV = _environment()


class CsrfRefused(Exception):
    pass


class WrongSessionKind(Exception):
    """A user page with an operator session, or the other way round: refused, not signed
    out (the session stays as it is)."""


def is_secure(scope: Scope, headers: Mapping[str, str], setting: str) -> bool:
    if setting != "auto":
        return setting == "true"
    proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return scope.get("scheme") == "https" or proto == "https"


def session_middleware(app: ASGIApp) -> ASGIApp:
    """Opens the session cookie into scope state and writes it back when it changed (or
    the visitor had none). Everything else about sessions is in portal.sessions."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        settings: PortalSettings = scope["app"].state.portal
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        secure = is_secure(scope, headers, settings.cookie_secure)
        name = SECURE_COOKIE if secure else COOKIE
        cookies = _cookies(headers.get("cookie", ""))
        raw = cookies.get(name)
        now = time.time()
        opened = (
            unseal(raw, settings.session_keys, settings.session_max_age_s, now) if raw else None
        )
        session = opened or new_session(now)
        before = seal_key(session)
        state = scope.setdefault("state", {})
        state["session"] = session
        state["session_secure"] = secure

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                current: Session = state["session"]
                if opened is None or seal_key(current) != before:
                    value = seal(current, settings.session_keys[0])
                    attributes = "; Path=/; HttpOnly; SameSite=Lax"
                    attributes += f"; Max-Age={settings.session_max_age_s}"
                    if secure:
                        attributes += "; Secure"
                    cookie = f"{name}={value}{attributes}"
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"set-cookie", cookie.encode("latin-1")),
                    ]
            await send(message)

        await app(scope, receive, send_with_cookie)

    return middleware


def seal_key(session: Session) -> bytes:
    import msgspec

    return msgspec.json.encode(session)


def _cookies(header: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name not in found:
            found[name] = value
    return found


def session_of(request: Request[Any, Any, Any]) -> Session:
    state = request.scope.setdefault("state", {})
    if "session" not in state:  # an unrouted path (404): no middleware ran, nobody signed in
        state["session"] = new_session()
    return state["session"]


def replace_session(request: Request[Any, Any, Any], session: Session) -> None:
    request.scope["state"]["session"] = session


async def check_csrf(request: Request[Any, Any, Any]) -> None:
    """Every unsafe request carries the session's token: in the form (`_csrf`) or, from
    htmx, the X-CSRF-Token header. SameSite=Lax is the second line, not the only one."""
    if request.method in SAFE_METHODS:
        return
    session = session_of(request)
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        form = await request.form()
        presented = form.get(CSRF_FIELD)
    if not presented or not hmac.compare_digest(str(presented).encode(), session.csrf.encode()):
        raise CsrfRefused()


def api_of(request: Request[Any, Any, Any]) -> Api:
    state: State = request.app.state
    cached = request.scope["state"].get("api")
    if cached is None:
        cached = Api(state.http, state.refresher, session_of(request))
        request.scope["state"]["api"] = cached
    return cached


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def render(
    request: Request[Any, Any, Any],
    template: str,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    style_nonce: bool = False,
    stripe: bool = False,
    **context: Any,
) -> Response[str]:
    """A page. `style_nonce`: the page's CSP also allows <style> elements carrying a fresh
    per-response nonce (`csp_nonce` in the template): xterm.js writes its theme and cell
    sizes into <style> elements it creates, which `style-src 'self'` alone refuses; the
    terminal's script stamps the nonce on them (static/terminal.js). Style attributes stay
    refused; no script source changes. `stripe`: the CSP also allows Stripe.js's origins
    (the payment page's confirm step, only with Stripe configured)."""
    session = session_of(request)
    nonce = secrets.token_urlsafe(18) if style_nonce else None
    html = ENV.get_template(template).render(
        session=session,
        csrf=session.csrf,
        csrf_field=CSRF_FIELD,
        nav=nav_for(session),
        path=request.url.path,
        csp_nonce=nonce,
        **context,
    )
    extra = {}
    if nonce or stripe:
        styles = f" 'nonce-{nonce}'" if nonce else ""
        extra["content-security-policy"] = csp(styles, stripe)
    return Response(
        html,
        status_code=status_code,
        media_type="text/html",
        headers={"cache-control": "no-store", **extra, **(headers or {})},
    )


def redirect(path: str) -> Response[Any]:
    return Redirect(path, status_code=303)


@dataclass
class FormErrors:
    """An API problem (or the portal's own check) laid out for a form: a message at each
    field it names, the rest at the top."""

    title: str | None = None
    detail: str | None = None
    fields: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.title or self.fields)

    @classmethod
    def of(cls, error: ApiError, aliases: Mapping[str, str] | None = None) -> FormErrors:
        aliases = aliases or {}
        fields: dict[str, str] = {}
        for item in error.errors:
            name = aliases.get(item.field, item.field)
            fields.setdefault(name, item.message)
        if not fields and error.detail and ":" in error.detail:
            # "slug: already taken": a detail that names its field in front
            named, _, message = error.detail.partition(":")
            name = aliases.get(named.strip(), named.strip())
            if name.isidentifier():
                fields[name] = message.strip()
        return cls(error.title, error.detail, fields)

    @classmethod
    def field(cls, name: str, message: str) -> FormErrors:
        return cls("Check the form", f"{name}: {message}", {name: message})


ENV.globals["empty_errors"] = FormErrors


def error_page(request: Request[Any, Any, Any], status: int, title: str, detail: str | None):
    return render(
        request,
        "error.html",
        status_code=status,
        title=title,
        detail=detail,
        status=status,
    )


def on_session_ended(request: Request[Any, Any, Any], exc: SessionEnded) -> Response[Any]:
    session = new_session()
    replace_session(request, session)
    back = request.url.path
    if is_htmx(request):  # a polled fragment: come back to the page that polled it
        back = urlsplit(request.headers.get("hx-current-url", "/")).path or "/"
        target = "/sign-in?next=" + quote(back, safe="/")
        return Response("", status_code=200, headers={"HX-Redirect": target})
    return redirect("/sign-in?next=" + quote(back, safe="/"))


def on_api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    # 404 and 403 keep their status: another tenant's resource is a 404 page here too.
    status = exc.status if exc.status in (400, 402, 403, 404, 409, 422, 429) else 502
    return error_page(request, status, exc.title, exc.detail)


def on_network_error(request: Request[Any, Any, Any], exc: NetworkError) -> Response[Any]:
    return error_page(request, 503, "The platform did not answer", exc.detail)


def on_csrf(request: Request[Any, Any, Any], exc: CsrfRefused) -> Response[Any]:
    return error_page(
        request,
        403,
        "This form has expired",
        "The request did not carry this session's form token (CSRF). Reload the page and "
        "submit it again.",
    )


def on_wrong_kind(request: Request[Any, Any, Any], exc: WrongSessionKind) -> Response[Any]:
    return error_page(request, 403, "Not for this sign-in", str(exc))


def on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, NotFoundException):
        return error_page(request, 404, "Page not found", f"Nothing is at {request.url.path}.")
    return error_page(request, exc.status_code, exc.detail or "Request refused", None)


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error rendering %s", request.url.path, exc_info=exc)
    return error_page(request, 500, "Something went wrong", "The error is in the portal's log.")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    Exception: on_unexpected,
    SessionEnded: on_session_ended,
    ApiError: on_api_error,
    NetworkError: on_network_error,
    CsrfRefused: on_csrf,
    WrongSessionKind: on_wrong_kind,
    HTTPException: on_http,
}


async def add_security_headers(response: Response[Any]) -> Response[Any]:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def http_client(settings: PortalSettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=settings.gateway_url,
        timeout=httpx.Timeout(15.0, connect=3.0),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        headers={"User-Agent": "gpucloud-portal"},
        # One client for every user: it must never keep a cookie from one answer for the
        # next request (nothing upstream sets one today).
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )


__all__ = ["Refresher"]
