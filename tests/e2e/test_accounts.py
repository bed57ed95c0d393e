"""Accounts you can trust (issue 10 item 5) on the running fleet, through the gateway: an
address pre-registered by an attacker gains them nothing, and one client failing sign-ins
cannot lock a different client out of the same account."""

import random
import re
import uuid

import httpx
import pytest

from devstack import mail

from .conftest import Person, bearer, idempotency_key, mailed_token, sign_up

pytestmark = pytest.mark.e2e
PASSWORD = "Accounts-" + uuid.uuid4().hex


def _from(fleet, address: str) -> httpx.Client:
    """A client whose TCP connections leave from `address` (any 127/8 address is local)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=fleet.gateway, timeout=15.0, transport=transport)


def _loopback() -> str:
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


def _sign_in(client: httpx.Client, person: Person, password: str, **headers: str):
    form = {"grant_type": "password", "username": person.email, "password": password}
    return client.post("/v1/iam/token", data=form, headers=headers)


class TestSignInThrottle:
    def test_one_address_failing_does_not_lock_another_out_of_the_same_account(self, fleet):
        with fleet.client() as gateway:
            _, owner = sign_up(gateway, "throttle", PASSWORD)
        attacker, other = _loopback(), _loopback()
        with _from(fleet, attacker) as bad:
            answers = [
                # a forged X-Forwarded-For per try does not make the attacker someone else
                _sign_in(bad, owner, "wrong password!", **{"X-Forwarded-For": f"198.51.100.{i}"})
                for i in range(8)
            ]
            assert [a.status_code for a in answers[:5]] == [400] * 5
            assert {a.status_code for a in answers[5:]} == {429}
            assert int(answers[-1].headers["Retry-After"]) > 0
            # Closed to that address even with the right password: guessing gains nothing.
            assert _sign_in(bad, owner, PASSWORD).status_code == 429
        with _from(fleet, other) as good:
            assert _sign_in(good, owner, PASSWORD).status_code == 200


class TestPreRegisteredEmail:
    def test_the_attacker_never_gets_the_role_granted_to_the_address(self, fleet, gateway):
        body, owner = sign_up(gateway, "victimorg", PASSWORD)
        tenant = body["tenant"]["id"]
        victim = Person("victim", PASSWORD)
        squat = gateway.post(
            "/v1/iam/signup",
            json={"tenant_name": "Squat", "slug": f"squat-{uuid.uuid4().hex[:10]}",
                  "email": victim.email, "password": "attacker password 1"},
            headers=idempotency_key(),
        )  # fmt: skip
        assert squat.status_code == 202
        admin = bearer(owner.enroll(gateway, tenant))
        invited = gateway.post(
            f"/v1/iam/tenants/{tenant}/members",
            json={"email": victim.email, "role": "admin"},
            headers=admin | idempotency_key(),
        )
        assert invited.status_code == 202, invited.text
        assert _sign_in(gateway, victim, "attacker password 1").status_code == 400
        accepted = gateway.post(
            "/v1/iam/invitations/accept",
            json={"token": mailed_token(victim.email, "gci_"), "password": PASSWORD},
        )
        assert accepted.status_code == 201, accepted.text
        form = {"grant_type": "password", "username": victim.email, "tenant": tenant}
        as_attacker = gateway.post("/v1/iam/token", data=form | {"password": "attacker password 1"})
        assert as_attacker.status_code == 400
        as_victim = gateway.post("/v1/iam/token", data=form | {"password": PASSWORD})
        assert as_victim.status_code == 200


def _csrf(page: str) -> str:
    found = re.search(r'name="_csrf" value="([^"]+)"', page)
    assert found, "no CSRF field on the page"
    return found.group(1)


class TestPortalLandingPages:
    def test_the_mailed_link_opens_a_page_whose_button_verifies(self, fleet):
        person = Person("landing", PASSWORD)
        with fleet.client() as browser:
            signed = browser.post(
                "/v1/iam/signup",
                json={"tenant_name": "Landing", "slug": f"landing-{uuid.uuid4().hex[:10]}",
                      "email": person.email, "password": PASSWORD},
            )  # fmt: skip
            assert signed.status_code == 202
            token = mailed_token(person.email, "gcv_")
            link = next(m.link for m in mail.messages(to=person.email) if m.token == token)
            assert link and link.startswith(fleet.gateway + "/verify?token=gcv_")
            page = browser.get(link.removeprefix(fleet.gateway))
            assert page.status_code == 200 and "Verify my address" in page.text
            # Opening the link spent nothing: signing in still fails.
            assert _sign_in(browser, person, PASSWORD).status_code == 400
            done = browser.post("/verify", data={"_csrf": _csrf(page.text), "token": token})
            assert done.status_code == 200, done.text
            assert "is verified" in done.text
            assert _sign_in(browser, person, PASSWORD).status_code == 200
