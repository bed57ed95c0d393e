"""The terminal's portal routes and the audit trail page against an in-process stand-in of
the gateway (httpx.MockTransport): what the portal sends (the user's token, the form's
Idempotency-Key, audit's filters), how it shows each answer (the terminal mounted with
no token in the page, 409 at the terminal, the step-up prompt, problems as JSON for the
page's script), and that no connect token reaches a log line. The real thing, in a
browser on the fleet, is tests/e2e/test_portal.py."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from platformkit.settings import ServiceSettings
from portal.bootstrap import build_app
from portal.nav import nav_for
from portal.sessions import COOKIE, new_session, seal
from portal.settings import PortalSettings

KEY = b"k" * 32
T, P, A = (
    "01a0000a-0000-7000-8000-00000000000a",
    "01a0000b-0000-7000-8000-00000000000b",
    "01a0000c-0000-7000-8000-00000000000c",
)
SID = "01a0000d-0000-7000-8000-00000000000d"
USER = "01a0000e-0000-7000-8000-00000000000e"
CONNECT_TOKEN = "eyJ0eXAiOiJ0ZXJtaW5hbCtqd3QifQ.connect-token-secret.sig"
PAGE = f"/projects/{P}/allocations/{A}"
STEP_UP = {
    "www-authenticate": 'Bearer error="insufficient_user_authentication", max_age=600',
    "content-type": "application/problem+json",
}


def jwt(claims: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"e30.{body}.sig"


def allocation(state: str = "running") -> dict[str, Any]:
    at = "2025-01-01T00:00:00+00:00"
    return {
        "id": A, "tenant_id": T, "project_id": P, "sku": "h100-80gb", "mig_profile": "1g.10gb",
        "count": 1, "state": state, "price_key": "mig:h100-80gb:1g.10gb", "node_id": "n1",
        "instances": [{"gpu_index": 0, "start": 4, "memory_slices": 1, "compute_slices": 1}],
        "created_at": at, "updated_at": at, "running_since": at, "last_active_at": at,
        "idle_stop_after_s": None, "reason": None,
    }  # fmt: skip


def terminal_session(state: str = "open", allocation_id: str = A) -> dict[str, Any]:
    return {"id": SID, "allocation_id": allocation_id, "state": state, "reason": None}


def connect_token(state: str) -> httpx.Response:
    """terminal-gateway's answer to a mint or an attach: the session and its token."""
    body = {
        "session": terminal_session(state), "token": CONNECT_TOKEN,
        "connect_url": f"ws://gw/v1/terminal/sessions/{SID}/connect",
        "expires_at": "2025-01-01T00:01:00Z",
    }  # fmt: skip
    return httpx.Response(201, json=body, headers={"cache-control": "no-store"})


class Gateway:
    """The routes the pages call; each test puts the answers it needs in `answers`."""

    def __init__(self) -> None:
        self.calls: list[httpx.Request] = []
        self.answers: dict[tuple[str, str], Callable[[httpx.Request], httpx.Response]] = {
            ("GET", f"/v1/gpu/tenants/{T}/projects/{P}/allocations/{A}"): lambda r: httpx.Response(
                200, json=allocation()
            ),
            ("GET", "/v1/billing/prices"): lambda r: httpx.Response(200, json={"items": []}),
            ("GET", f"/v1/terminal/sessions/{SID}"): lambda r: httpx.Response(
                200, json=terminal_session()
            ),
            ("POST", "/v1/terminal/sessions"): lambda r: connect_token("minted"),
            ("POST", f"/v1/terminal/sessions/{SID}/attach"): lambda r: connect_token("open"),
            ("GET", f"/v1/iam/tenants/{T}/members"): lambda r: httpx.Response(
                200, json=[{"principal_id": USER, "email": "owner@example.test", "role": "owner"}]
            ),
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        answer = self.answers.get((request.method, request.url.path))
        if answer is None:
            return httpx.Response(404, json={"title": "Not found", "status": 404})
        return answer(request)

    def made(self, method: str, path: str) -> list[httpx.Request]:
        return [c for c in self.calls if c.method == method and c.url.path == path]


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None):
    body = {"title": title, "status": status, "detail": detail}
    return lambda r: httpx.Response(status, json=body, headers=headers)


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


@pytest.fixture
def client(gateway: Gateway):
    settings = PortalSettings(
        service=ServiceSettings("portal"), gateway_url="http://gw", session_keys=(KEY,)
    )
    app = build_app(settings)
    with TestClient(app) as c:
        app.state.http = httpx.AsyncClient(
            base_url="http://gw", transport=httpx.MockTransport(gateway.handle)
        )
        yield c


def sign_in(client: TestClient, roles: tuple[str, ...] = ("owner",)) -> str:
    """A signed-in user's cookie (as the sign-in page seals it); the session's CSRF token."""
    session = new_session()
    session.kind, session.email, session.subject = "user", "owner@example.test", USER
    session.tenant_id, session.roles = T, list(roles)
    session.access_token = jwt({"sub": USER, "tenant": T, "roles": list(roles)})
    session.refresh_token, session.access_expires = "gcr_x", time.time() + 300
    client.cookies.set(COOKIE, seal(session, KEY))
    return session.csrf


class TestOpenTerminal:
    def test_it_mints_with_the_forms_key_and_sends_the_page_the_session_id(self, client, gateway):
        csrf = sign_in(client)
        response = client.post(
            f"{PAGE}/terminal", data={"_csrf": csrf, "key": "k-1"}, follow_redirects=False
        )
        assert response.status_code == 303
        assert response.headers["location"] == f"{PAGE}?terminal={SID}#terminal"
        (mint,) = gateway.made("POST", "/v1/terminal/sessions")
        assert json.loads(mint.content) == {"allocation_id": A}
        assert mint.headers["idempotency-key"] == "k-1"
        assert mint.headers["authorization"].startswith("Bearer e30.")
        assert CONNECT_TOKEN not in response.headers["location"]

    def test_not_running_is_shown_at_the_terminal(self, client, gateway):
        csrf = sign_in(client)
        gateway.answers[("POST", "/v1/terminal/sessions")] = problem(
            409, "Conflict", "the allocation is released, not running"
        )
        response = client.post(f"{PAGE}/terminal", data={"_csrf": csrf, "key": "k-2"})
        assert response.status_code == 409
        section = response.text.split('id="terminal"', 1)[1]
        assert 'role="alert"' in section and "released, not running" in section

    def test_a_step_up_challenge_is_the_prompt_and_the_replay_keeps_the_key(self, client, gateway):
        csrf = sign_in(client)
        fresh = jwt({"sub": USER, "tenant": T, "roles": ["owner"], "amr": ["pwd", "otp"]})
        minted = gateway.answers[("POST", "/v1/terminal/sessions")]
        challenge = problem(401, "A recent second factor is required", "sign in again", STEP_UP)
        gateway.answers[("POST", "/v1/terminal/sessions")] = lambda r: (
            minted(r) if r.headers["authorization"] == f"Bearer {fresh}" else challenge(r)
        )
        response = client.post(f"{PAGE}/terminal", data={"_csrf": csrf, "key": "k-3"})
        assert response.status_code == 401
        assert ">Confirm it is you</h1>" in response.text
        replay = re.search(r'name="_replay" value="([^"]+)"', response.text)[1]
        # Password and code: iam's new token carries the second factor; the open runs again.
        gateway.answers[("POST", "/v1/iam/token")] = lambda r: httpx.Response(
            200, json={"access_token": fresh, "refresh_token": "gcr_y", "expires_in": 300}
        )
        confirmed = client.post(
            "/step-up",
            data={"_csrf": csrf, "_replay": replay, "password": "pw", "otp": "123456"},
            follow_redirects=False,
        )
        assert confirmed.status_code == 303
        assert confirmed.headers["location"] == f"{PAGE}?terminal={SID}#terminal"
        keys = [c.headers["idempotency-key"] for c in gateway.made("POST", "/v1/terminal/sessions")]
        assert keys == ["k-3", "k-3"]  # the same session, not a second one

    def test_without_the_sessions_csrf_token_nothing_is_minted(self, client, gateway):
        sign_in(client)
        response = client.post(f"{PAGE}/terminal", data={"key": "k-4"})
        assert response.status_code == 403
        assert not gateway.made("POST", "/v1/terminal/sessions")


class TestTheAllocationPage:
    def test_a_live_session_mounts_the_terminal_without_its_token(self, client, gateway):
        sign_in(client)
        response = client.get(f"{PAGE}?terminal={SID}")
        assert response.status_code == 200
        html = response.text
        assert f'data-connect="/v1/terminal/sessions/{SID}/connect"' in html
        assert f'data-attach="{PAGE}/terminal/{SID}/attach"' in html
        assert CONNECT_TOKEN not in html
        assert not gateway.made("POST", f"/v1/terminal/sessions/{SID}/attach")
        # xterm's <style> elements need this response's nonce; scripts stay 'self' only.
        nonce = re.search(r'src="/static/terminal.js" nonce="([^"]+)"', html)[1]
        csp = response.headers["content-security-policy"]
        assert f"style-src 'self' 'nonce-{nonce}';" in csp and "script-src 'self';" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert client.get(f"{PAGE}?terminal={SID}").headers["content-security-policy"] != csp

    def test_without_a_session_no_terminal_script_and_the_usual_policy(self, client):
        sign_in(client)
        response = client.get(PAGE)
        assert "terminal.js" not in response.text and 'id="open-terminal"' in response.text
        assert "nonce" not in response.headers["content-security-policy"]

    @pytest.mark.parametrize(
        ("session", "shown"),
        [
            (terminal_session("closed"), "has ended: closed"),
            (terminal_session("open", allocation_id="01a0000f-0000-7000-8000-00000000000f"),
             "No such terminal session"),
        ],
    )  # fmt: skip
    def test_an_ended_or_foreign_session_is_not_mounted(self, client, gateway, session, shown):
        sign_in(client)
        gateway.answers[("GET", f"/v1/terminal/sessions/{SID}")] = lambda r: httpx.Response(
            200, json=session
        )
        response = client.get(f"{PAGE}?terminal={SID}")
        assert response.status_code == 200
        assert shown in response.text and 'id="term-screen"' not in response.text

    def test_a_session_id_that_is_no_uuid_is_not_asked_for(self, client, gateway):
        sign_in(client)
        response = client.get(f"{PAGE}?terminal=../../iam")
        assert "No such terminal session" in response.text
        assert not [c for c in gateway.calls if c.url.path.startswith("/v1/terminal")]


class TestAttachForTheScript:
    def attach(self, client: TestClient, csrf: str | None) -> httpx.Response:
        headers = {"accept": "application/json"}
        if csrf:
            headers["x-csrf-token"] = csrf
        return client.post(f"{PAGE}/terminal/{SID}/attach", headers=headers)

    def test_a_fresh_token_as_json_never_stored_never_logged(self, client, gateway, caplog):
        csrf = sign_in(client)
        with caplog.at_level(logging.DEBUG):
            response = self.attach(client, csrf)
        assert response.status_code == 200
        assert response.json() == {"token": CONNECT_TOKEN, "expires_at": "2025-01-01T00:01:00Z"}
        assert response.headers["cache-control"] == "no-store"
        assert gateway.made("POST", f"/v1/terminal/sessions/{SID}/attach")
        assert CONNECT_TOKEN not in caplog.text

    @pytest.mark.parametrize(
        ("answer", "status", "expect"),
        [
            (problem(409, "Conflict", "the session is closed"), 409,
             {"title": "Conflict", "detail": "the session is closed"}),
            (problem(401, "A recent second factor is required", "sign in again", STEP_UP), 401,
             {"step_up": True}),
            (problem(503, "Service unavailable", "terminal-gateway is starting"), 503,
             {"title": "Service unavailable"}),
        ],
    )  # fmt: skip
    def test_problems_come_back_as_json(self, client, gateway, answer, status, expect):
        csrf = sign_in(client)
        gateway.answers[("POST", f"/v1/terminal/sessions/{SID}/attach")] = answer
        response = self.attach(client, csrf)
        assert response.status_code == status
        assert response.json().items() >= expect.items()

    def test_an_ended_sign_in_says_where_to_sign_in(self, client):
        token = re.search(r'name="_csrf" value="([^"]+)"', client.get("/sign-in").text)[1]
        response = self.attach(client, token)
        assert response.status_code == 401
        assert response.json()["sign_in"] == f"/sign-in?next={PAGE}"

    def test_without_the_csrf_header_it_is_refused(self, client, gateway):
        sign_in(client)
        assert self.attach(client, None).status_code == 403
        assert not gateway.made("POST", f"/v1/terminal/sessions/{SID}/attach")

    def test_the_form_fallback_goes_through_the_step_up_prompt(self, client, gateway):
        csrf = sign_in(client)
        gateway.answers[("POST", f"/v1/terminal/sessions/{SID}/attach")] = problem(
            401, "A recent second factor is required", "sign in again", STEP_UP
        )
        response = client.post(f"{PAGE}/terminal/{SID}/attach", data={"_csrf": csrf})
        assert response.status_code == 401 and "Confirm it is you" in response.text


RECORD = {
    "index": 41,
    "leaf": "",
    "record": {
        "time": "2025-01-02T03:04:05Z", "action": "gpuaas.allocation.requested",
        "actor": {"subject": USER, "kind": "user", "tenant": T},
        "target": {"kind": "allocation", "id": A, "tenant": T, "project": P},
        "outcome": "success", "service": "gpuaas", "client_address": "203.0.113.9",
        "details": {"tenant_seq": 7, "sku": "<b>h100</b>"},
    },
}  # fmt: skip
RECORDS = f"/v1/audit/tenants/{T}/records"


class TestAuditTrail:
    def page_of(self, gateway: Gateway, next_after: int | None = None) -> None:
        body = {"items": [RECORD], "checkpoint": None, "next_after": next_after}
        gateway.answers[("GET", RECORDS)] = lambda r: httpx.Response(200, json=body)

    def test_records_with_member_emails_escaped_details_and_the_next_page(self, client, gateway):
        sign_in(client)
        self.page_of(gateway, next_after=42)
        response = client.get("/audit")
        assert response.status_code == 200
        row = response.text.split('data-index="41"', 1)[1].split("</tr>", 1)[0]
        assert "owner@example.test" in row and "gpuaas.allocation.requested" in row
        assert "<td>7</td>" in row and "&lt;b&gt;h100&lt;/b&gt;" in row
        assert 'href="?after=42"' in response.text
        (call,) = gateway.made("GET", RECORDS)
        assert call.url.params["limit"] == "50" and "after" not in call.url.params

    def test_filters_go_to_audit_an_email_as_its_member_id_and_times_in_utc(self, client, gateway):
        sign_in(client)
        self.page_of(gateway)
        query = {
            "actor": "Owner@Example.test", "action": "iam.auth.signed-in",
            "since": "2025-01-02T03:04", "until": "2025-01-03T00:00", "after": "17",
            "limit": "10",
        }  # fmt: skip
        response = client.get("/audit", params=query)
        assert response.status_code == 200
        (call,) = gateway.made("GET", RECORDS)
        assert dict(call.url.params) == {
            "actor": USER, "action": "iam.auth.signed-in", "since": "2025-01-02T03:04:00Z",
            "until": "2025-01-03T00:00:00Z", "after": "17", "limit": "10",
        }  # fmt: skip
        assert "Clear the filters" in response.text and "First page" in response.text

    @pytest.mark.parametrize(
        ("query", "field"),
        [({"since": "yesterday"}, "since"), ({"actor": "nobody@example.test"}, "actor")],
    )
    def test_a_filter_that_cannot_be_asked_is_shown_at_its_field(
        self, client, gateway, query, field
    ):
        sign_in(client)
        self.page_of(gateway)
        response = client.get("/audit", params=query)
        assert response.status_code == 400
        assert f'id="f-{field}"' in response.text and f'id="e-{field}"' in response.text
        assert not gateway.made("GET", RECORDS)

    def test_a_lower_role_gets_audits_403_as_a_page(self, client, gateway):
        sign_in(client, roles=("viewer",))
        gateway.answers[("GET", RECORDS)] = problem(
            403, "Forbidden", "requires one of the roles: owner, admin"
        )
        gateway.answers[("GET", f"/v1/iam/tenants/{T}/members")] = problem(403, "Forbidden", "no")
        response = client.get("/audit")
        assert response.status_code == 403 and "owner, admin" in response.text
        assert 'href="/audit"' not in response.text  # no nav link for this role


class TestNav:
    @pytest.mark.parametrize(
        ("roles", "shown"),
        [(["owner"], True), (["admin"], True), (["member"], False), (["viewer", "billing"], False)],
    )
    def test_the_audit_link_is_for_the_roles_that_may_read_it(self, roles, shown):
        session = new_session()
        session.kind, session.access_token, session.tenant_id, session.roles = "user", "t", T, roles
        assert ("/audit" in [link.href for link in nav_for(session)]) is shown
