"""What several page modules need: the form of a request, the caller's tenant paths and
projects, step-up-guarded actions."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from litestar import Request, Response

from portal.api import Api, SessionEnded, StepUpRequired, seg
from portal.sessions import Session
from portal.web import FormErrors, WrongSessionKind, api_of, render, session_of

Handler = Callable[[Request[Any, Any, Any], dict[str, str]], Awaitable[Response[Any]]]
# Actions an API may answer with a step-up challenge, by name: the step-up page replays
# one after the user confirmed with password and code.
STEP_UP_ACTIONS: dict[str, Handler] = {}
REPLAY_TTL_S = 600
_REPLAY_AAD = b"gpucloud-portal-step-up-v1"


async def form_of(request: Request[Any, Any, Any]) -> dict[str, str]:
    form = await request.form()
    return {k: str(v) for k, v in form.items() if not k.startswith("_")}


def user_session(request: Request[Any, Any, Any]) -> Session:
    """The signed-in user's session (an operator or an anonymous visitor is sent away)."""
    session = session_of(request)
    if session.operator:
        raise WrongSessionKind("This is an operator session: tenant pages need a user's sign-in.")
    if not session.signed_in:
        raise SessionEnded("sign in to continue")
    if session.restricted or not session.tenant_id:
        raise WrongSessionKind(
            "Your tenant requires a second factor: enroll one on the account page (/account), "
            "then sign in again with its code."
        )
    return session


def tenant_base(session: Session) -> str:
    return f"/v1/iam/tenants/{seg(session.tenant_id)}"


def gpu_base(session: Session, project_id: str) -> str:
    return f"/v1/gpu/tenants/{seg(session.tenant_id)}/projects/{seg(project_id)}"


def billing_base(session: Session) -> str:
    return f"/v1/billing/tenants/{seg(session.tenant_id)}"


async def projects_of(api: Api, session: Session) -> list[dict[str, Any]]:
    return items(await api.get(f"{tenant_base(session)}/projects"))


def items(body: Any) -> list[Any]:
    """A list answer: some routes answer a bare array, paged ones {"items": [...]}."""
    return body["items"] if isinstance(body, dict) else body


def ok(result: Any) -> bool:
    if isinstance(result, SessionEnded):
        raise result
    return not isinstance(result, BaseException)


def step_up_action(name: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        STEP_UP_ACTIONS[name] = handler
        return handler

    return register


def _replay_key(request: Request[Any, Any, Any]) -> bytes:
    return request.app.state.portal.session_keys[0]


def seal_replay(request: Request[Any, Any, Any], action: str, form: dict[str, str]) -> str:
    session = session_of(request)
    body = json.dumps(
        {"action": action, "form": form, "sid": session.sid, "at": time.time()}
    ).encode()
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_replay_key(request)).encrypt(nonce, body, _REPLAY_AAD)
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def open_replay(request: Request[Any, Any, Any], value: str) -> tuple[str, dict[str, str]] | None:
    try:
        raw = base64.urlsafe_b64decode(value.encode())
        body = json.loads(AESGCM(_replay_key(request)).decrypt(raw[:12], raw[12:], _REPLAY_AAD))
    except (ValueError, InvalidTag):
        return None
    if body.get("sid") != session_of(request).sid or time.time() - body["at"] > REPLAY_TTL_S:
        return None
    if body.get("action") not in STEP_UP_ACTIONS:
        return None
    return body["action"], body["form"]


async def run_guarded(
    request: Request[Any, Any, Any], action: str, form: dict[str, str]
) -> Response[Any]:
    """Run a registered action; a step-up challenge from the API becomes the prompt."""
    try:
        return await STEP_UP_ACTIONS[action](request, form)
    except StepUpRequired as exc:
        return step_up_prompt(request, action, form, exc.detail)


def step_up_prompt(
    request: Request[Any, Any, Any],
    action: str,
    form: dict[str, str],
    detail: str | None,
    errors: FormErrors | None = None,
) -> Response[Any]:
    session = session_of(request)
    return render(
        request,
        "step_up.html",
        status_code=401,
        replay=seal_replay(request, action, form),
        reason=detail,
        email=session.email,
        errors=errors or FormErrors(),
    )


__all__ = ["api_of"]
