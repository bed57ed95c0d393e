"""The apps pages and the payment page's Stripe confirm step against an in-process stand-in of
the gateway (httpx.MockTransport): what the portal sends (the user's token, the form's
Idempotency-Key, appplatform's launch body), how it shows each answer (problems at their
fields, another tenant's 404 and a lower role's 403 as pages, the nav per role), and for
Stripe: the page with the Payment Element carries the client_secret in a data attribute
only, its CSP allows Stripe's origins only then, the secret is in no URL or log line; without
the publishable key (the sandbox) nothing of Stripe is on any page. The real thing, in a
browser on the fleet, is tests/e2e/test_portal_apps.py."""

from __future__ import annotations

import base64
import json
import logging
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
T, P, INST, PAY = (
    "01a0000a-0000-7000-8000-00000000000a",
    "01a0000b-0000-7000-8000-00000000000b",
    "01a0000c-0000-7000-8000-00000000000c",
    "01a0000f-0000-7000-8000-00000000000f",
)
USER = "01a0000e-0000-7000-8000-00000000000e"
APPS = f"/v1/apps/tenants/{T}/projects/{P}"
PAYMENTS = f"/v1/billing/tenants/{T}/payments"
SECRET = "pi_3Pxyz_secret_s3cr3tValue"
PK = "pk_test_portal123"
AT = "2025-01-01T00:00:00+00:00"


def jwt(claims: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"e30.{body}.sig"


def catalog_app(name: str = "hello", env: tuple[str, ...] = ("GREETING",)) -> dict[str, Any]:
    manifest = {
        "env_required_at_launch": [{"name": e, "description": f"the {e}"} for e in env],
        "ports": [{"name": "http", "port": 8000, "protocol": "http", "expose": True}],
        "replicas": 1,
        "resources": {"sku": "h100-80gb", "mig_profile": "1g.10gb", "count": 1},
    }
    version = {
        "version": "0.1.0", "version_id": USER, "manifest_digest": "sha256:ab",
        "published_at": AT, "manifest": manifest,
    }  # fmt: skip
    return {
        "app": name, "namespace": "tenant", "tenant_id": T, "description": "says <hello>",
        "channels": [{"channel": "stable", "versions": [version]}],
    }  # fmt: skip


def instance(state: str = "provisioning") -> dict[str, Any]:
    return {
        "id": INST, "name": "hello-1", "tenant_id": T, "project_id": P, "generation": 1,
        "created_at": AT, "updated_at": AT, "created_by": USER,
        "spec": {
            "app": "hello", "app_tenant_id": T, "version": "0.1.0", "channel": "stable",
            "count": 1, "env": {}, "replicas": 1, "sku": "h100-80gb", "mig_profile": "1g.10gb",
            "manifest_digest": "sha256:ab", "desired_state": "running",
        },
        "status": {
            "state": state, "reason": None, "observed_generation": 1, "ready_replicas": 0,
            "conditions": [], "replicas": [
                {"replica_id": USER, "slot": 0, "generation": 1, "state": "running",
                 "allocation_id": None, "node_id": None, "reason": None}
            ],
        },
    }  # fmt: skip


def payment(status: str = "pending", provider: str = "stripe") -> dict[str, Any]:
    return {
        "id": PAY, "tenant_id": T, "amount_micros": 5_000_000, "currency": "USD",
        "provider": provider, "provider_ref": "pi_3Pxyz", "status": status,
        "failure_reason": "card_declined" if status == "failed" else None,
    }  # fmt: skip


def problem(status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None):
    body = {"title": title, "status": status, "detail": detail, "errors": errors}
    return lambda r: httpx.Response(
        status, json=body, headers={"content-type": "application/problem+json"}
    )


class Gateway:
    def __init__(self) -> None:
        self.calls: list[httpx.Request] = []
        created = {**payment(), "client_secret": SECRET}
        self.answers: dict[tuple[str, str], Callable[[httpx.Request], httpx.Response]] = {
            ("GET", f"/v1/iam/tenants/{T}/projects"): lambda r: httpx.Response(
                200, json=[{"id": P, "name": "default"}]
            ),
            ("GET", "/v1/apps/catalog"): lambda r: httpx.Response(
                200, json={"items": [catalog_app()]}
            ),
            ("POST", f"{APPS}/apps/hello/instances"): lambda r: httpx.Response(
                201, json=instance("pending")
            ),
            ("GET", f"{APPS}/instances"): lambda r: httpx.Response(
                200, json={"items": [instance()], "next_after": None}
            ),
            ("GET", f"{APPS}/instances/{INST}"): lambda r: httpx.Response(200, json=instance()),
            ("GET", f"{APPS}/instances/{INST}/logs"): lambda r: httpx.Response(
                200, content=b"line 1\n<b>line 2</b>\n"
            ),
            ("POST", f"{APPS}/instances/{INST}/stop"): lambda r: httpx.Response(
                202, json=instance("stopping")
            ),
            ("POST", PAYMENTS): lambda r: httpx.Response(201, json=created),
            ("GET", f"{PAYMENTS}/{PAY}"): lambda r: httpx.Response(200, json=payment()),
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        answer = self.answers.get((request.method, request.url.path))
        if answer is None:
            return httpx.Response(404, json={"title": "Not found", "status": 404})
        return answer(request)

    def made(self, method: str, path: str) -> list[httpx.Request]:
        return [c for c in self.calls if c.method == method and c.url.path == path]


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


def portal(gateway: Gateway, stripe_key: str | None):
    settings = PortalSettings(
        service=ServiceSettings("portal"),
        gateway_url="http://gw",
        session_keys=(KEY,),
        stripe_publishable_key=stripe_key,
    )
    app = build_app(settings)
    client = TestClient(app)
    client.__enter__()
    app.state.http = httpx.AsyncClient(
        base_url="http://gw", transport=httpx.MockTransport(gateway.handle)
    )
    return client


@pytest.fixture
def client(gateway: Gateway):
    c = portal(gateway, None)
    yield c
    c.__exit__(None, None, None)


@pytest.fixture
def stripe_client(gateway: Gateway):
    c = portal(gateway, PK)
    yield c
    c.__exit__(None, None, None)


def sign_in(client: TestClient, roles: tuple[str, ...] = ("owner",)) -> str:
    session = new_session()
    session.kind, session.email, session.subject = "user", "owner@example.test", USER
    session.tenant_id, session.roles = T, list(roles)
    session.access_token = jwt({"sub": USER, "tenant": T, "roles": list(roles)})
    session.refresh_token, session.access_expires = "gcr_x", time.time() + 300
    client.cookies.set(COOKIE, seal(session, KEY))
    return session.csrf


def launch_form(csrf: str, **changes: str) -> dict[str, str]:
    form = {
        "_csrf": csrf, "_idempotency_key": "k-1", "app": "hello", "namespace": "tenant",
        "name": "hello-1", "project_id": P, "channel": "stable", "version": "",
        "replicas": "1", "env.GREETING": "hi",
    }  # fmt: skip
    return {**form, **changes}


class TestCatalogAndLaunch:
    def test_the_catalog_lists_the_apps_with_a_launch_link(self, client, gateway):
        sign_in(client)
        response = client.get("/apps", params={"q": "hel"})
        assert response.status_code == 200
        (call,) = gateway.made("GET", "/v1/apps/catalog")
        assert call.url.params["q"] == "hel"
        assert call.headers["authorization"].startswith("Bearer e30.")
        assert 'data-app="hello"' in response.text and "stable 0.1.0" in response.text
        assert "says &lt;hello&gt;" in response.text  # escaped
        assert 'href="/apps/launch?app=hello&amp;namespace=tenant"' in response.text

    def test_the_launch_form_asks_for_the_env_required_at_launch(self, client):
        sign_in(client)
        response = client.get("/apps/launch", params={"app": "hello", "namespace": "tenant"})
        assert response.status_code == 200
        assert 'name="env.GREETING"' in response.text and "the GREETING" in response.text

    def test_an_app_not_in_the_catalog_is_a_404_page(self, client):
        sign_in(client)
        response = client.get("/apps/launch", params={"app": "nope"})
        assert response.status_code == 404 and "No such app" in response.text

    def test_a_launch_sends_the_body_with_the_forms_key_and_opens_the_instance(
        self, client, gateway
    ):
        csrf = sign_in(client)
        response = client.post("/apps/launch", data=launch_form(csrf), follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == f"/projects/{P}/instances/{INST}"
        (call,) = gateway.made("POST", f"{APPS}/apps/hello/instances")
        assert call.headers["idempotency-key"] == "k-1"
        assert json.loads(call.content) == {
            "name": "hello-1", "namespace": "tenant", "channel": "stable",
            "env": {"GREETING": "hi"}, "replicas": 1,
        }  # fmt: skip

    @pytest.mark.parametrize(
        ("field", "form_field"),
        [("env.GREETING", "env.GREETING"), ("version", "version"), ("name", "name")],
    )
    def test_a_refusal_is_shown_at_the_field_it_names(self, client, gateway, field, form_field):
        csrf = sign_in(client)
        gateway.answers[("POST", f"{APPS}/apps/hello/instances")] = problem(
            422, "Invalid request", "the launch is refused", [{"field": field, "message": "bad!"}]
        )
        response = client.post("/apps/launch", data=launch_form(csrf))
        assert response.status_code == 422
        assert f'id="e-{form_field}"' in response.text and "bad!" in response.text
        assert 'aria-invalid="true"' in response.text and 'role="alert"' in response.text

    def test_a_bad_replica_count_is_refused_without_a_call(self, client, gateway):
        csrf = sign_in(client)
        response = client.post("/apps/launch", data=launch_form(csrf, replicas="many"))
        assert response.status_code == 400 and 'id="e-replicas"' in response.text
        assert not gateway.made("POST", f"{APPS}/apps/hello/instances")

    def test_a_lower_role_gets_appplatforms_403_at_the_form(self, client, gateway):
        csrf = sign_in(client, roles=("viewer",))
        gateway.answers[("POST", f"{APPS}/apps/hello/instances")] = problem(
            403, "Forbidden", "requires workload.manage"
        )
        response = client.post("/apps/launch", data=launch_form(csrf))
        assert response.status_code == 403 and "requires workload.manage" in response.text

    def test_no_launch_without_the_csrf_token(self, client, gateway):
        sign_in(client)
        response = client.post("/apps/launch", data=launch_form("wrong"))
        assert response.status_code == 403
        assert not gateway.made("POST", f"{APPS}/apps/hello/instances")


class TestInstances:
    def test_the_list_shows_state_and_replicas(self, client, gateway):
        sign_in(client)
        response = client.get("/instances", params={"project": P})
        assert response.status_code == 200
        assert f'href="/projects/{P}/instances/{INST}"' in response.text
        assert "provisioning" in response.text and "0/1" in response.text

    def test_the_page_shows_status_logs_escaped_and_a_stop_button(self, client, gateway):
        sign_in(client)
        response = client.get(f"/projects/{P}/instances/{INST}")
        assert response.status_code == 200
        assert 'data-state="provisioning"' in response.text
        assert "&lt;b&gt;line 2&lt;/b&gt;" in response.text
        assert 'id="stop-instance"' in response.text
        assert f'hx-get="/projects/{P}/instances/{INST}/live"' in response.text

    def test_a_final_instance_is_not_polled_nor_stoppable(self, client, gateway):
        sign_in(client)
        gateway.answers[("GET", f"{APPS}/instances/{INST}")] = lambda r: httpx.Response(
            200, json=instance("stopped")
        )
        response = client.get(f"/projects/{P}/instances/{INST}")
        assert 'id="stop-instance"' not in response.text and "hx-get" not in response.text
        assert not gateway.made("GET", f"{APPS}/instances/{INST}/logs")

    def test_stop_posts_and_returns_to_the_page(self, client, gateway):
        csrf = sign_in(client)
        response = client.post(
            f"/projects/{P}/instances/{INST}/stop", data={"_csrf": csrf}, follow_redirects=False
        )
        assert response.status_code == 303
        assert response.headers["location"] == f"/projects/{P}/instances/{INST}"
        assert gateway.made("POST", f"{APPS}/instances/{INST}/stop")

    def test_another_tenants_instance_is_a_404_page(self, client, gateway):
        sign_in(client)
        response = client.get(f"/projects/{P}/instances/01a00000-0000-7000-8000-000000000999")
        assert response.status_code == 404

    def test_a_lower_role_gets_the_403_page(self, client, gateway):
        sign_in(client, roles=("billing",))
        gateway.answers[("GET", f"{APPS}/instances/{INST}")] = problem(
            403, "Forbidden", "requires workload.read"
        )
        response = client.get(f"/projects/{P}/instances/{INST}")
        assert response.status_code == 403 and "requires workload.read" in response.text
        assert 'href="/apps"' not in response.text and 'href="/instances"' not in response.text

    def test_no_session_is_sent_to_sign_in(self, client):
        response = client.get(f"/projects/{P}/instances/{INST}", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/sign-in?next=")


class TestNav:
    @pytest.mark.parametrize(
        ("roles", "project_roles", "shown"),
        [
            (["owner"], {}, True),
            (["viewer"], {}, True),
            (["billing"], {}, False),
            ([], {P: ["viewer"]}, True),
        ],
    )
    def test_the_apps_links_are_for_workload_readers(self, roles, project_roles, shown):
        session = new_session()
        session.kind, session.access_token, session.tenant_id = "user", "t", T
        session.roles, session.project_roles = roles, project_roles
        hrefs = [link.href for link in nav_for(session)]
        assert ("/apps" in hrefs) is shown and ("/instances" in hrefs) is shown


def top_up(client: TestClient, csrf: str) -> httpx.Response:
    response = client.post(
        "/billing/top-up",
        data={"_csrf": csrf, "_idempotency_key": "pay-1", "amount": "5.00"},
        follow_redirects=False,
    )
    written = response.headers.get("set-cookie", "")
    if written.startswith(COOKIE + "="):  # the browser keeps the session the answer wrote
        client.cookies.clear()
        client.cookies.set(COOKIE, written.split(";")[0].partition("=")[2])
    return response


class TestStripeConfirm:
    def test_with_the_key_the_page_mounts_the_payment_element(self, stripe_client, gateway, caplog):
        caplog.set_level(logging.DEBUG)
        csrf = sign_in(stripe_client)
        response = top_up(stripe_client, csrf)
        assert response.status_code == 200  # the page itself: no redirect, no URL to carry it
        assert "location" not in response.headers
        html = response.text
        assert f'data-client-secret="{SECRET}"' in html
        assert f'data-publishable-key="{PK}"' in html
        assert '<script src="https://js.stripe.com/v3/" defer></script>' in html
        # the secret is in that attribute only: no link, form action or script source
        assert html.count(SECRET) == 1
        csp = response.headers["content-security-policy"]
        assert "script-src 'self' https://js.stripe.com;" in csp
        assert "frame-src https://js.stripe.com https://hooks.stripe.com;" in csp
        assert "connect-src 'self' https://js.stripe.com https://api.stripe.com;" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert SECRET not in caplog.text
        assert SECRET not in response.headers.get("set-cookie", "")

    def test_a_reload_asks_billing_again_with_the_same_key(self, stripe_client, gateway):
        csrf = sign_in(stripe_client)
        top_up(stripe_client, csrf)
        response = stripe_client.get(f"/billing/payments/{PAY}")
        assert f'data-client-secret="{SECRET}"' in response.text
        first, again = gateway.made("POST", PAYMENTS)
        assert again.headers["idempotency-key"] == first.headers["idempotency-key"] == "pay-1"
        assert json.loads(again.content) == json.loads(first.content)

    def test_a_failed_payment_keeps_the_element_and_keeps_polling_a_while(
        self, stripe_client, gateway
    ):
        csrf = sign_in(stripe_client)
        top_up(stripe_client, csrf)
        gateway.answers[("GET", f"{PAYMENTS}/{PAY}")] = lambda r: httpx.Response(
            200, json=payment("failed")
        )
        page = stripe_client.get(f"/billing/payments/{PAY}").text
        assert 'id="stripe-confirm"' in page and 'id="payment-retry"' in page
        assert f"/billing/payments/{PAY}/live?failed_polls=0" in page
        live = stripe_client.get(f"/billing/payments/{PAY}/live", params={"failed_polls": 5})
        assert "failed_polls=6" in live.text and 'hx-trigger="every 3s"' in live.text
        last = stripe_client.get(f"/billing/payments/{PAY}/live", params={"failed_polls": 19})
        assert "hx-get" not in last.text and "Check the status again" in last.text

    def test_another_sessions_payment_gets_no_secret(self, stripe_client, gateway):
        sign_in(stripe_client)  # this session created no top-up
        response = stripe_client.get(f"/billing/payments/{PAY}")
        assert response.status_code == 200 and "data-client-secret" not in response.text
        assert "js.stripe.com" not in response.headers["content-security-policy"]
        assert not gateway.made("POST", PAYMENTS)

    def test_stripes_return_url_drops_the_secret(self, stripe_client):
        sign_in(stripe_client)
        response = stripe_client.get(
            f"/billing/payments/{PAY}",
            params={"payment_intent": "pi_3Pxyz", "payment_intent_client_secret": SECRET},
            follow_redirects=False,
        )
        assert response.status_code == 303
        assert response.headers["location"] == f"/billing/payments/{PAY}"

    def test_without_the_key_nothing_of_stripe_is_on_the_page(self, client, gateway):
        csrf = sign_in(client)
        response = top_up(client, csrf)
        assert response.status_code == 303
        assert SECRET not in response.headers["location"]
        page = client.get(response.headers["location"])
        assert "js.stripe.com" not in page.text and "data-client-secret" not in page.text
        assert "js.stripe.com" not in page.headers["content-security-policy"]
        assert "script-src 'self';" in page.headers["content-security-policy"]

    def test_the_sandbox_settles_without_a_secret(self, stripe_client, gateway):
        created = {**payment("settled", "sandbox"), "client_secret": None}
        gateway.answers[("POST", PAYMENTS)] = lambda r: httpx.Response(201, json=created)
        csrf = sign_in(stripe_client)
        response = top_up(stripe_client, csrf)
        assert response.status_code == 303
        assert response.headers["location"] == f"/billing/payments/{PAY}"

    def test_a_settled_sandbox_payment_has_the_refund_form_and_is_not_polled(
        self, client, gateway
    ):
        sign_in(client)
        gateway.answers[("GET", f"{PAYMENTS}/{PAY}")] = lambda r: httpx.Response(
            200, json=payment("settled", "sandbox")
        )
        page = client.get(f"/billing/payments/{PAY}")
        assert page.status_code == 200 and 'id="refund-h"' in page.text
        assert "hx-get" not in page.text.split('id="payment-live"', 1)[1].split(">", 1)[0]
        assert "data-client-secret" not in page.text
