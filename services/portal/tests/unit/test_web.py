"""The portal's request plumbing without a fleet: cookies, CSRF, redirects, error pages.
(Everything that needs the API is in tests/e2e/test_portal.py, in a real browser.)"""

import re

import pytest
from litestar.testing import TestClient

from gpucloud_cli.sdk.errors import from_answer
from platformkit.settings import ServiceSettings
from portal.bootstrap import build_app
from portal.settings import PortalSettings
from portal.views.auth import _safe_next
from portal.web import FormErrors


@pytest.fixture(scope="module")
def client():
    settings = PortalSettings(
        service=ServiceSettings("portal"),
        gateway_url="http://127.0.0.1:9",  # nothing answers: these tests never reach it
        session_keys=(b"k" * 32,),
    )
    with TestClient(build_app(settings)) as c:
        yield c


def csrf_of(html: str) -> str:
    return re.search(r'name="_csrf" value="([^"]+)"', html)[1]


class TestCookiesAndHeaders:
    def test_the_session_cookie_is_httponly_lax_and_not_secure_over_http(self, client):
        response = client.get("/sign-in")
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("gpucloud_session=")
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie

    def test_over_tls_it_is_a_secure_host_cookie(self):
        settings = PortalSettings(service=ServiceSettings("portal"), session_keys=(b"k" * 32,))
        with TestClient(build_app(settings)) as c:
            cookie = c.get("/sign-in", headers={"x-forwarded-proto": "https"}).headers["set-cookie"]
        assert cookie.startswith("__Host-gpucloud_session=") and "; Secure" in cookie

    def test_pages_carry_a_strict_content_security_policy(self, client):
        headers = client.get("/sign-in").headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"


class TestCsrf:
    def test_a_form_without_the_token_is_refused(self, client):
        client.get("/sign-in")
        response = client.post("/sign-in", data={"email": "a@b.c", "password": "x"})
        assert response.status_code == 403 and "form has expired" in response.text

    def test_a_wrong_token_is_refused_in_the_form_and_in_the_header(self, client):
        client.get("/sign-in")
        assert client.post("/sign-in", data={"_csrf": "nope"}).status_code == 403
        assert client.post("/sign-in", headers={"X-CSRF-Token": "nope"}).status_code == 403

    def test_the_session_token_passes_and_the_form_names_the_missing_field(self, client):
        token = csrf_of(client.get("/sign-in").text)
        response = client.post("/sign-in", data={"_csrf": token, "email": "a@b.c"})
        assert response.status_code == 400
        assert 'id="e-password"' in response.text and 'aria-invalid="true"' in response.text

    def test_another_sessions_token_is_refused(self, client):
        token = csrf_of(client.get("/sign-in").text)
        client.cookies.clear()
        assert client.post("/sign-in", data={"_csrf": token}).status_code == 403


class TestNavigation:
    def test_signed_out_pages_send_to_sign_in_with_the_way_back(self, client):
        client.cookies.clear()
        for path in ("/", "/launch", "/billing", "/projects/x/allocations/y"):
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 303, path
            assert response.headers["location"] == f"/sign-in?next={path}"

    def test_an_unknown_path_is_a_404_page(self, client):
        response = client.get("/no/such/page")
        assert response.status_code == 404 and "<h1>Page not found</h1>" in response.text

    @pytest.mark.parametrize(
        ("target", "safe"),
        [("/billing", "/billing"), ("//evil.example/x", "/"), ("https://evil.example", "/"),
         ("billing", "/"), (None, "/")],
    )  # fmt: skip
    def test_next_stays_on_this_site(self, target, safe):
        assert _safe_next(target) == safe

    def test_the_operator_pages_need_an_operator(self, client):
        client.cookies.clear()
        response = client.get("/operator/fleet", follow_redirects=False)
        assert response.status_code == 303


class TestFormErrors:
    def test_field_errors_land_at_their_fields(self):
        error = from_answer(
            400,
            {},
            b'{"type":"https://gpucloud.dev/problems/validation","title":"Request validation '
            b'failed","status":400,"detail":"slug: bad","errors":[{"field":"slug",'
            b'"message":"bad"}]}',
        )
        errors = FormErrors.of(error)
        assert errors.title == "Request validation failed" and errors.fields == {"slug": "bad"}

    def test_a_detail_naming_its_field_lands_there_with_an_alias(self):
        error = from_answer(422, {}, b'{"title":"Nope","status":422,"detail":"amount_micros: >0"}')
        assert FormErrors.of(error, {"amount_micros": "amount"}).fields == {"amount": ">0"}

    def test_a_problem_naming_no_field_stays_at_the_top(self):
        error = from_answer(409, {}, b'{"title":"No capacity","status":409,"detail":"none free"}')
        errors = FormErrors.of(error)
        assert errors.title == "No capacity" and errors.fields == {}


class TestPolledFragments:
    def test_a_fragment_whose_session_ended_sends_the_page_to_sign_in(self, client):
        client.cookies.clear()
        response = client.get(
            "/projects/p/allocations/a/live",
            headers={"HX-Request": "true", "HX-Current-URL": "http://x/projects/p/allocations/a"},
        )
        assert response.status_code == 200
        assert response.headers["hx-redirect"] == "/sign-in?next=/projects/p/allocations/a"

    @pytest.mark.parametrize(
        ("status", "polls", "has_form"),
        [("pending", True, False), ("settled", False, True), ("partially_refunded", False, True)],
    )
    def test_a_payment_that_settles_while_open_gains_its_refund_form(self, status, polls, has_form):
        # The sandbox and Stripe settle by webhook, after the page was drawn pending: the
        # polled fragment, not the page around it, has to bring the refund form.
        from portal.web import ENV

        payment = {
            "id": "p-1",
            "status": status,
            "amount_micros": 20_000_000,
            "currency": "USD",
            "provider": "sandbox",
            "provider_ref": None,
            "failure_reason": None,
        }
        html = ENV.get_template("_payment_live.html").render(
            p=payment, errors=FormErrors(), idempotency_key="k", csrf="c", csrf_field="_csrf"
        )
        assert ('hx-get="/billing/payments/p-1/live"' in html) is polls
        assert ('action="/billing/payments/p-1/refund"' in html) is has_form
