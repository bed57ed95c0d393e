"""The landing pages of iam's emailed links: verifying an address (`/verify?token=`) and
accepting an invitation (`/invitations/accept?token=`). Opening the link only shows a
button: the token is spent by the POST it sends (mail scanners prefetch links with GET)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post

from portal.api import ApiError, public_post
from portal.views.common import form_of
from portal.web import FormErrors, render


@get("/verify", name="verify_page")
async def verify_page(request: Request[Any, Any, Any], token: str = "") -> Response[Any]:
    return render(request, "verify.html", errors=FormErrors(), token=token, done=None)


@post("/verify", name="verify")
async def verify(request: Request[Any, Any, Any]) -> Response[Any]:
    token = (await form_of(request)).get("token", "")
    try:
        done = await public_post(request.app.state.http, "/v1/iam/verify", {"token": token})
    except ApiError as exc:
        return render(
            request, "verify.html", status_code=exc.status, errors=FormErrors.of(exc),
            token=token, done=None,
        )  # fmt: skip
    return render(request, "verify.html", errors=FormErrors(), token="", done=done)


@get("/invitations/accept", name="accept_invitation_page")
async def accept_invitation_page(request: Request[Any, Any, Any], token: str = "") -> Response[Any]:
    return render(request, "accept_invitation.html", errors=FormErrors(), token=token, done=None)


@post("/invitations/accept", name="accept_invitation")
async def accept_invitation(request: Request[Any, Any, Any]) -> Response[Any]:
    form = await form_of(request)
    body = {"token": form.get("token", ""), "password": form.get("password", "")}
    try:
        done = await public_post(request.app.state.http, "/v1/iam/invitations/accept", body)
    except ApiError as exc:
        return render(
            request, "accept_invitation.html", status_code=exc.status,
            errors=FormErrors.of(exc), token=body["token"], done=None,
        )  # fmt: skip
    return render(request, "accept_invitation.html", errors=FormErrors(), token="", done=done)


ROUTES = [verify_page, verify, accept_invitation_page, accept_invitation]
