"""MFA: TOTP enrollment and activation, sign-in with a second factor, recovery codes, the
tenant policy for admins, and step-up (RFC 9470) on privileged routes."""

import datetime as dt
import uuid

import psycopg
import pyotp
import pytest

from iam.domain.tokens import Subject, access_claims

from .conftest import (
    FACTORS,
    access,
    add_member,
    bearer,
    email,
    enroll_mfa,
    next_otp,
    sign_up,
    token,
    totp_step,
)
from .test_sign_in import verifier

pytestmark = pytest.mark.integration


async def _members(client, tenant_id: str, owner: str, address: str):
    return await client.post(
        f"/v1/iam/tenants/{tenant_id}/members",
        json={"email": address, "role": "viewer"},
        headers=bearer(owner),
    )


class TestEnrollment:
    async def test_enroll_shows_the_secret_once_and_activation_returns_recovery_codes(
        self, client, iam_database
    ):
        account = await sign_up(client)
        headers = bearer(await access(client, account["email"]))
        enrolled = await client.post("/v1/iam/me/mfa/totp", headers=headers)
        assert enrolled.status_code == 201 and enrolled.headers["cache-control"] == "no-store"
        secret = enrolled.json()["secret"]
        uri = enrolled.json()["otpauth_uri"]
        assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
        status = await client.get("/v1/iam/me/mfa", headers=headers)
        assert status.json() == {"totp": "pending", "recovery_codes_left": 0}
        assert secret not in status.text

        wrong = await client.post(
            "/v1/iam/me/mfa/totp/verify", json={"code": "000000"}, headers=headers
        )
        assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "code"
        right = await client.post(
            "/v1/iam/me/mfa/totp/verify",
            json={"code": pyotp.TOTP(secret).generate_otp(totp_step())},
            headers=headers,
        )
        assert right.status_code == 200 and right.headers["cache-control"] == "no-store"
        codes = right.json()["recovery_codes"]
        assert len(codes) == 10 and len(set(codes)) == 10
        status = await client.get("/v1/iam/me/mfa", headers=headers)
        assert status.json() == {"totp": "active", "recovery_codes_left": 10}
        # An active factor is not replaced by a password-only session.
        assert (await client.post("/v1/iam/me/mfa/totp", headers=headers)).status_code == 409
        with psycopg.connect(iam_database) as conn:
            stored = conn.execute(
                "SELECT code_hash FROM recovery_codes WHERE user_id = %s", (account["user"]["id"],)
            ).fetchall()
            event = conn.execute(
                "SELECT convert_from(payload, 'UTF8') FROM outbox WHERE type ="
                " 'iam.user.mfa-enabled' AND subject = %s",
                (account["user"]["id"],),
            ).fetchone()
        assert len(stored) == 10 and all(len(bytes(h[0])) == 32 for h in stored)
        assert not any(c.replace("-", "").encode() in bytes(h[0]) for c in codes for h in stored)
        assert event is not None and secret not in event[0]

    async def test_service_accounts_have_no_second_factor(self, client):
        account = await sign_up(client)
        owner = await access(client, account["email"], mfa=True)
        base = (
            f"/v1/iam/tenants/{account['tenant']['id']}/projects/{account['project']['id']}"
            "/service-accounts"
        )
        sa = (await client.post(base, json={"name": "bot"}, headers=bearer(owner))).json()
        key = (await client.post(f"{base}/{sa['id']}/keys", json={}, headers=bearer(owner))).json()
        sa_token = (
            await client.post(
                "/v1/iam/token",
                data={"grant_type": "client_credentials", "client_secret": key["api_key"]},
            )
        ).json()["access_token"]
        enrolled = await client.post("/v1/iam/me/mfa/totp", headers=bearer(sa_token))
        assert enrolled.status_code == 403


class TestSignInWithSecondFactor:
    async def test_amr_and_auth_time_and_password_alone_is_not_enough(self, client):
        account = await sign_up(client)
        await enroll_mfa(client, account["email"])
        alone = await token(client, account["email"])
        assert alone.status_code == 400 and alone.json()["title"] == "mfa_required"
        before = int(dt.datetime.now(dt.UTC).timestamp())
        signed_in = await token(client, account["email"], otp=next_otp(account["email"]))
        assert signed_in.status_code == 200, signed_in.text
        claims = await verifier(client).claims(signed_in.json()["access_token"])
        assert claims["amr"] == ["pwd", "otp"]
        assert before - 2 <= claims["auth_time"] <= claims["iat"]
        # A refreshed token keeps the original authentication (and its time).
        refreshed = await client.post(
            "/v1/iam/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": signed_in.json()["refresh_token"],
            },
        )
        again = await verifier(client).claims(refreshed.json()["access_token"])
        assert again["amr"] == ["pwd", "otp"] and again["auth_time"] == claims["auth_time"]

    async def test_a_totp_code_is_accepted_once(self, client):
        account = await sign_up(client)
        await enroll_mfa(client, account["email"])
        code = next_otp(account["email"])
        assert (await token(client, account["email"], otp=code)).status_code == 200
        replayed = await token(client, account["email"], otp=code)
        assert replayed.status_code == 400 and replayed.json()["title"] == "invalid_grant"

    async def test_a_recovery_code_works_once(self, client):
        account = await sign_up(client)
        factor = await enroll_mfa(client, account["email"])
        code = factor["codes"].pop()
        first = await token(client, account["email"], otp=code.upper().replace("-", " "))
        assert first.status_code == 200, first.text
        claims = await verifier(client).claims(first.json()["access_token"])
        assert claims["amr"] == ["pwd", "otp"]
        assert (await token(client, account["email"], otp=code)).status_code == 400
        status = await client.get("/v1/iam/me/mfa", headers=bearer(first.json()["access_token"]))
        assert status.json()["recovery_codes_left"] == 9

    async def test_wrong_second_factors_lock_the_account_despite_the_right_password(self, client):
        account = await sign_up(client)
        await enroll_mfa(client, account["email"])
        for _ in range(5):
            wrong = await token(client, account["email"], otp="not-a-recovery-code")
            assert wrong.status_code == 400
        locked = await token(client, account["email"], otp=next_otp(account["email"]))
        assert locked.status_code == 429


class TestStepUp:
    async def test_privileged_routes_challenge_a_password_only_token(self, client):
        account = await sign_up(client)
        tenant_id = account["tenant"]["id"]
        password_only = await access(client, account["email"])
        newcomer = email()
        refused = await _members(client, tenant_id, password_only, newcomer)
        assert refused.status_code == 401
        challenge = refused.headers["www-authenticate"]
        assert 'error="insufficient_user_authentication"' in challenge
        assert "max_age=600" in challenge
        assert refused.json()["title"] == "A recent second factor is required"
        # ...satisfied by signing in again with the second factor.
        stepped_up = await access(client, account["email"], mfa=True)
        assert (await _members(client, tenant_id, stepped_up, newcomer)).status_code == 202

    async def test_an_old_second_factor_is_not_recent(self, client):
        account = await sign_up(client)
        await enroll_mfa(client, account["email"])
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=11)
        subject = Subject(
            uuid.UUID(account["user"]["id"]), "user", uuid.UUID(account["tenant"]["id"]),
            frozenset({"owner"}), {}, ("pwd", "otp"), long_ago,
        )  # fmt: skip
        settings = client.app.state.settings
        stale = await client.app.state.iam.keys.sign(
            access_claims(
                subject, issuer=settings.token_issuer, audience=settings.token_audience,
                jti=uuid.uuid4().hex, issued_at=dt.datetime.now(dt.UTC),
            )
        )  # fmt: skip
        refused = await _members(client, account["tenant"]["id"], stale, email())
        assert refused.status_code == 401
        assert "insufficient_user_authentication" in refused.headers["www-authenticate"]

    async def test_a_lower_role_is_still_forbidden_not_challenged(self, client):
        account = await sign_up(client)
        owner = await access(client, account["email"], mfa=True)
        viewer = await access(
            client, await add_member(client, owner, account["tenant"]["id"], "viewer"), mfa=True
        )
        assert (await _members(client, account["tenant"]["id"], viewer, email())).status_code == 403


class TestTenantPolicy:
    async def test_admins_without_a_factor_get_a_token_only_for_enrolling(self, client):
        account = await sign_up(client)
        tenant_id = account["tenant"]["id"]
        owner = await access(client, account["email"], mfa=True)
        admin_email = await add_member(client, owner, tenant_id, "admin")
        viewer_email = await add_member(client, owner, tenant_id, "viewer")
        admin_refresh = (await token(client, admin_email)).json()["refresh_token"]
        policy = f"/v1/iam/tenants/{tenant_id}/mfa-policy"
        set_policy = await client.put(
            policy, json={"require_mfa_for_admins": True}, headers=bearer(owner)
        )
        assert set_policy.status_code == 200, set_policy.text
        assert (await client.get(policy, headers=bearer(owner))).json() == {
            "require_mfa_for_admins": True
        }
        # The viewer is not covered by the policy.
        assert (await token(client, viewer_email)).status_code == 200
        restricted = await token(client, admin_email)
        assert restricted.status_code == 200 and "refresh_token" not in restricted.json()
        claims = await verifier(client).claims(restricted.json()["access_token"])
        assert claims["restricted"] == "mfa_enrollment" and "tenant" not in claims
        assert claims["roles"] == [] and claims["proj"] == {}
        headers = bearer(restricted.json()["access_token"])
        assert (
            await client.get(f"/v1/iam/tenants/{tenant_id}", headers=headers)
        ).status_code == 404
        assert (await client.get("/v1/iam/me", headers=headers)).status_code == 200
        # A session from before the policy cannot be refreshed into a full token.
        refreshed = await client.post(
            "/v1/iam/token", data={"grant_type": "refresh_token", "refresh_token": admin_refresh}
        )
        assert refreshed.status_code == 400
        # The restricted token is enough to enroll; then the admin signs in fully.
        await enroll_mfa(client, admin_email)
        full = await access(client, admin_email)
        assert (
            await client.get(f"/v1/iam/tenants/{tenant_id}", headers=bearer(full))
        ).status_code == 200
        assert FACTORS[admin_email]["codes"]

    async def test_changing_the_policy_needs_step_up_and_an_admin(self, client):
        account = await sign_up(client)
        tenant_id = account["tenant"]["id"]
        policy = f"/v1/iam/tenants/{tenant_id}/mfa-policy"
        password_only = await access(client, account["email"])
        body = {"require_mfa_for_admins": True}
        assert (
            await client.put(policy, json=body, headers=bearer(password_only))
        ).status_code == 401
