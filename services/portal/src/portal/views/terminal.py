"""The browser terminal on the allocation page (docs/terminal.md, docs/portal.md).

The portal mints the session with the user's token (`POST /v1/terminal/sessions`, with an
Idempotency-Key from the form) and sends the browser back to the allocation page with the
session's id (`?terminal=<id>`: an id, never a token). The page's own script
(static/terminal.js) then asks this portal for a connect token each time it connects: on
load, after a reload and after every drop (`POST .../terminal/{id}/attach`, which calls
terminal-gateway's attach with the user's token and answers the token as JSON, `no-store`),
and opens `/v1/terminal/sessions/{id}/connect` through the gateway with the subprotocols
`gpucloud.terminal.v1` and `bearer.<token>`. The token lives in the script's memory for the
second it takes to connect: it is in no page, no URL, no cookie and no log line.

Refusals are shown as the other pages show them: a problem at the terminal (409 not
running, 403 a role without `workload.manage`), a step-up challenge (the tenant's terminal
policy requires a recent second factor) as the step-up prompt, which opens the terminal
again once confirmed. The script's attach call answers problems as JSON; a step-up there
sends the person to the same prompt through the form fallback of the attach route.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from litestar import Request, Response, post

from portal.api import ApiError, NetworkError, SessionEnded, StepUpRequired, seg
from portal.sessions import new_session
from portal.views.common import form_of, run_guarded, step_up_action, user_session
from portal.views.gpus import allocation_response
from portal.web import FormErrors, WrongSessionKind, api_of, redirect, replace_session

NO_STORE = {"cache-control": "no-store"}


def terminal_page(project_id: str, allocation_id: str, session_id: str) -> str:
    return (
        f"/projects/{seg(project_id)}/allocations/{seg(allocation_id)}"
        f"?terminal={seg(session_id)}#terminal"
    )


@step_up_action("open_terminal")
async def _open_terminal(request: Request[Any, Any, Any], form: dict[str, str]) -> Response[Any]:
    user_session(request)
    project_id, allocation_id = form["project_id"], form["allocation_id"]
    try:
        minted = await api_of(request).post(
            "/v1/terminal/sessions",
            {"allocation_id": allocation_id},
            key=form.get("key") or str(uuid.uuid4()),
        )
    except StepUpRequired:
        raise
    except ApiError as exc:
        return await allocation_response(
            request,
            project_id,
            allocation_id,
            terminal_errors=FormErrors.of(exc),
            status_code=exc.status if 400 <= exc.status < 500 else 502,
        )
    # The minted token is dropped here: the page's script asks for its own (attach).
    return redirect(terminal_page(project_id, allocation_id, minted["session"]["id"]))


@post("/projects/{project_id:str}/allocations/{allocation_id:str}/terminal", name="open_terminal")
async def open_terminal(
    request: Request[Any, Any, Any], project_id: str, allocation_id: str
) -> Response[Any]:
    raw = await form_of(request)
    form = {"project_id": project_id, "allocation_id": allocation_id, "key": raw.get("key", "")}
    return await run_guarded(request, "open_terminal", form)


@step_up_action("attach_terminal")
async def _attach_terminal(request: Request[Any, Any, Any], form: dict[str, str]) -> Response[Any]:
    """The attach route's form fallback (the script's way to the step-up prompt): once the
    attach is allowed, back to the page, whose script attaches with a token of its own."""
    user_session(request)
    project_id, allocation_id = form["project_id"], form["allocation_id"]
    session_id = form["session_id"]
    try:
        await api_of(request).post(f"/v1/terminal/sessions/{seg(session_id)}/attach")
    except StepUpRequired:
        raise
    except ApiError as exc:
        return await allocation_response(
            request,
            project_id,
            allocation_id,
            terminal_errors=FormErrors.of(exc),
            status_code=exc.status if 400 <= exc.status < 500 else 502,
        )
    return redirect(terminal_page(project_id, allocation_id, session_id))


def _wants_json(request: Request[Any, Any, Any]) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _problem(status: int, title: str, detail: str | None, **extra: Any) -> Response[Any]:
    body = {"status": status, "title": title, "detail": detail, **extra}
    return Response(body, status_code=status, media_type="application/json", headers=NO_STORE)


@post(
    "/projects/{project_id:str}/allocations/{allocation_id:str}/terminal/{session_id:str}/attach",
    name="attach_terminal",
)
async def attach_terminal(
    request: Request[Any, Any, Any], project_id: str, allocation_id: str, session_id: str
) -> Response[Any]:
    """A fresh connect token for the page's script (`Accept: application/json`): `{token,
    expires_at}`, or a problem as JSON (`step_up: true` when a second factor is due,
    `sign_in` when the session has ended). A plain form post runs the same attach through
    the step-up flow and comes back to the page."""
    form = {"project_id": project_id, "allocation_id": allocation_id, "session_id": session_id}
    if not _wants_json(request):
        return await run_guarded(request, "attach_terminal", form)
    back = f"/projects/{seg(project_id)}/allocations/{seg(allocation_id)}"
    try:
        user_session(request)
        uuid.UUID(session_id)
        answer = await api_of(request).post(f"/v1/terminal/sessions/{seg(session_id)}/attach")
    except ValueError:
        return _problem(404, "No such terminal session", "open a new one")
    except SessionEnded as exc:  # as on_session_ended, but the script navigates
        replace_session(request, new_session())
        sign_in = "/sign-in?next=" + quote(back, safe="/")
        return _problem(401, "Sign in again", str(exc), sign_in=sign_in)
    except WrongSessionKind as exc:
        return _problem(403, "Not for this sign-in", str(exc))
    except StepUpRequired as exc:
        return _problem(401, exc.title, exc.detail, step_up=True)
    except ApiError as exc:
        return _problem(exc.status, exc.title, exc.detail)
    except NetworkError as exc:
        return _problem(503, "The platform did not answer", exc.detail)
    return Response(
        {"token": answer["token"], "expires_at": answer["expires_at"]},
        status_code=200,
        media_type="application/json",
        headers=NO_STORE,
    )


ROUTES = [open_terminal, attach_terminal]
