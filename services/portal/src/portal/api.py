"""The portal's client of the public API: the gateway, with the signed-in user's token,
exactly as any client calls it (no service import, no database).

Errors are the CLI SDK's typed problem+json errors (`gpucloud_cli.sdk.errors.from_answer`):
one mapping of statuses, problem types and RFC 9470 step-up challenges for both clients.

Token refresh: iam rotates refresh tokens and revokes the whole family when one is presented
twice. Two requests of one browser (a navigation and an htmx poll) can carry the same
cookie at once, so a refresh is single-flight per refresh token in this process, and its
result is remembered for a minute: the second request gets the same new pair instead of
presenting the spent token. Across replicas nothing is shared; a concurrent refresh landing
on two replicas would end the session (the user signs in again), which keeping access tokens
fresh early (REFRESH_BEFORE_S) makes rare.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
from opentelemetry.propagate import inject

from gpucloud_cli.sdk.errors import (
    ApiError,
    AuthError,
    GpucloudError,
    NetworkError,
    StepUpRequired,
    from_answer,
)
from portal.sessions import Session

REFRESH_BEFORE_S = 60.0
_REMEMBER_S = 60.0

__all__ = [
    "Api",
    "ApiError",
    "AuthError",
    "GpucloudError",
    "NetworkError",
    "SessionEnded",
    "StepUpRequired",
    "claims",
    "seg",
]


class SessionEnded(Exception):
    """The session's tokens can no longer be renewed: sign in again."""


def seg(value: Any) -> str:
    return quote(str(value), safe="")


def claims(token: str) -> dict[str, Any]:
    """A JWT's claims, read unverified, to remember who is signed in and for display only:
    every service verifies the token itself."""
    try:
        payload = token.split(".")[1]
        decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str | None
    expires_in: int


def apply_tokens(session: Session, tokens: Tokens, now: float) -> None:
    found = claims(tokens.access_token)
    session.access_token = tokens.access_token
    session.refresh_token = tokens.refresh_token
    session.access_expires = now + tokens.expires_in
    session.subject = found.get("sub")
    session.tenant_id = found.get("tenant")
    session.roles = list(found.get("roles") or [])
    session.project_roles = {k: list(v) for k, v in (found.get("proj") or {}).items()}
    session.amr = list(found.get("amr") or [])
    session.restricted = found.get("restricted")


class Refresher:
    """Single-flight refresh per refresh token, with a short memory of the outcome."""

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[Tokens]] = {}
        self._recent: OrderedDict[str, tuple[float, Tokens]] = OrderedDict()

    async def refresh(self, http: httpx.AsyncClient, refresh_token: str) -> Tokens:
        key = hashlib.sha256(refresh_token.encode()).hexdigest()
        now = time.monotonic()
        while self._recent and next(iter(self._recent.values()))[0] < now:
            self._recent.popitem(last=False)
        if key in self._recent:
            return self._recent[key][1]
        flight = self._flights.get(key)
        if flight is not None:
            return await asyncio.shield(flight)
        future: asyncio.Future[Tokens] = asyncio.get_running_loop().create_future()
        self._flights[key] = future
        try:
            tokens = await token_grant(
                http, {"grant_type": "refresh_token", "refresh_token": refresh_token}
            )
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            self._flights.pop(key, None)
        future.set_result(tokens)
        self._recent[key] = (now + _REMEMBER_S, tokens)
        return tokens


async def token_grant(http: httpx.AsyncClient, form: dict[str, str]) -> Tokens:
    """iam's token endpoint (never retried: a refresh token presented twice revokes)."""
    response = await _send(http, "POST", "/v1/iam/token", data=form)
    body = response.json()
    return Tokens(body["access_token"], body.get("refresh_token"), int(body["expires_in"]))


async def public_post(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> Any:
    """A public iam route that takes no token (the emailed links' endpoints)."""
    return (await _send(http, "POST", path, json=body)).json()


async def _send(http: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers: dict[str, str] = kwargs.pop("headers", None) or {}
    inject(headers)  # the portal's span is the parent of the gateway's
    try:
        response = await http.request(method, path, headers=headers, **kwargs)
    except httpx.TransportError as exc:
        raise NetworkError(f"the API did not answer ({type(exc).__name__})") from None
    if response.status_code >= 400:
        raise from_answer(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
            response.reason_phrase,
        )
    return response


class Api:
    """One request's view of the API: the session's token, renewed when it is about to
    expire or an answer says it has (once per call)."""

    def __init__(self, http: httpx.AsyncClient, refresher: Refresher, session: Session) -> None:
        self.http, self.refresher, self.session = http, refresher, session
        self.renewed = False  # the session changed: the cookie is written again

    async def _token(self, force: bool = False) -> str:
        session = self.session
        if not session.access_token:
            raise SessionEnded("not signed in")
        if force or session.access_expires - time.time() < REFRESH_BEFORE_S:
            if session.kind != "user" or not session.refresh_token:
                if force or session.access_expires < time.time():
                    raise SessionEnded("the session has expired")
                return session.access_token
            try:
                tokens = await self.refresher.refresh(self.http, session.refresh_token)
            except AuthError as exc:
                raise SessionEnded(exc.detail or exc.title) from None
            apply_tokens(session, tokens, time.time())
            self.renewed = True
        return session.access_token  # type: ignore[return-value]

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {await self._token()}"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        try:
            return await _send(
                self.http, method, path, json=json, params=params, headers=dict(headers)
            )
        except StepUpRequired:
            raise
        except AuthError as exc:
            if exc.status != 401 or self.session.kind != "user":
                raise
        headers["Authorization"] = f"Bearer {await self._token(force=True)}"
        return await _send(self.http, method, path, json=json, params=params, headers=headers)

    async def get(self, path: str, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        response = await self.request("GET", path, params=query or None)
        return msgspec.json.decode(response.content)  # 3x the stdlib on a 500-row page

    async def post(self, path: str, body: Any = None, *, key: str | None = None) -> Any:
        response = await self.request(
            "POST", path, json=body, idempotency_key=key or str(uuid.uuid4())
        )
        return response.json() if response.content else None

    async def put(self, path: str, body: Any) -> Any:
        return (await self.request("PUT", path, json=body)).json()

    async def delete(self, path: str) -> None:
        await self.request("DELETE", path)

    async def many(self, *calls: Any) -> list[Any]:
        """Several reads at once; each result is the value or the ApiError it raised."""
        return list(await asyncio.gather(*calls, return_exceptions=True))
