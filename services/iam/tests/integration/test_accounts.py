"""Accounts you can trust (issue 10 item 5), against iam in process on real PostgreSQL with
its mail going over SMTP to a real sink: sign-up and registration verified by a single-use,
expiring link; roles offered by invitation and bound only when the address's owner
accepts; no enumeration; no direct creation of tenants or users but an operator's."""

import base64
import hashlib

import psycopg
import pytest

from .conftest import (
    OPERATOR_TOKEN,
    PASSWORD,
    access,
    bearer,
    email,
    invite,
    mailed_count,
    mailed_token,
    sign_up,
    slug,
    token,
)

pytestmark = pytest.mark.integration
ATTACKER_PASSWORD = "attacker's own password 1"


def _digest(token_: str) -> bytes:
    secret = token_.split("_", 1)[1]
    return hashlib.sha256(secret.encode()).digest()


async def _sign_up_pending(client, address: str, password: str = PASSWORD) -> str:
    body = {"tenant_name": "Pending", "slug": slug(), "email": address, "password": password}
    seen = mailed_count(address, "gcv_")
    response = await client.post("/v1/iam/signup", json=body)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "verification_sent"
    return mailed_token(address, "gcv_", seen)


class TestEmailVerification:
    async def test_nothing_signs_in_before_the_link_and_the_link_works_once(self, client):
        address = email()
        link = await _sign_up_pending(client, address)
        before = await token(client, address)
        assert before.status_code == 400 and before.json()["title"] == "invalid_grant"
        first = await client.post("/v1/iam/verify", json={"token": link})
        assert first.status_code == 201, first.text
        assert first.json()["user"]["email"] == address
        assert (await token(client, address)).status_code == 200
        again = await client.post("/v1/iam/verify", json={"token": link})
        assert again.status_code == 422
        assert again.json()["errors"][0]["field"] == "token"

    async def test_an_expired_link_is_refused(self, client, iam_database):
        address = email()
        link = await _sign_up_pending(client, address)
        with psycopg.connect(iam_database) as conn:
            conn.execute(
                "UPDATE email_verifications SET expires_at = now() - interval '1 second'"
                " WHERE token_hash = %s",
                (_digest(link),),
            )
        refused = await client.post("/v1/iam/verify", json={"token": link})
        assert refused.status_code == 422
        assert (await token(client, address)).status_code == 400

    async def test_tokens_are_stored_hashed(self, client, iam_database):
        address = email()
        link = await _sign_up_pending(client, address)
        with psycopg.connect(iam_database) as conn:
            rows = conn.execute(
                "SELECT token_hash, password_hash FROM email_verifications WHERE email = %s",
                (address,),
            ).fetchall()
        assert [bytes(r[0]) for r in rows] == [_digest(link)]
        assert link.split("_", 1)[1] not in repr(rows)
        assert all(r[1].startswith("$argon2id$") for r in rows)

    async def test_garbage_tokens_are_a_problem_naming_the_field(self, client):
        for garbage in ("nope", "gcv_" + base64.urlsafe_b64encode(b"x" * 32).decode()):
            refused = await client.post("/v1/iam/verify", json={"token": garbage})
            assert refused.status_code == 422
            assert refused.json()["errors"][0]["field"] == "token"

    async def test_register_answers_alike_for_taken_and_new_addresses(self, client):
        taken = (await sign_up(client))["email"]
        answers = [
            await client.post("/v1/iam/register", json={"email": a, "password": PASSWORD})
            for a in (taken, email())
        ]
        assert [a.status_code for a in answers] == [202, 202]
        assert answers[0].json() == answers[1].json()
        assert answers[0].headers.get("content-length") == answers[1].headers.get("content-length")

    async def test_a_registered_account_has_no_tenant_until_invited(self, client):
        address = email()
        seen = mailed_count(address, "gcv_")
        registered = await client.post(
            "/v1/iam/register", json={"email": address, "password": PASSWORD}
        )
        assert registered.status_code == 202
        verified = await client.post(
            "/v1/iam/verify", json={"token": mailed_token(address, "gcv_", seen)}
        )
        assert verified.status_code == 201
        assert "tenant" not in verified.json()
        assert (await token(client, address)).status_code == 400  # belongs to no tenant


class TestOperatorOnlyCreation:
    async def test_users_are_created_directly_only_by_an_operator(self, client):
        body = {"email": email(), "password": PASSWORD}
        assert (await client.post("/v1/iam/users", json=body)).status_code == 401
        made = await client.post("/v1/iam/users", json=body, headers=bearer(OPERATOR_TOKEN))
        assert made.status_code == 201


class TestInvitations:
    async def test_pre_registering_the_victims_address_gains_the_attacker_nothing(
        self, client, iam_database
    ):
        """The attacker signs up (and registers) victim@... with their own password before
        the owner grants that address a role. Without the victim's mailbox they never get
        an account, the invitation never binds to them, and the victim, accepting with the
        mailed token, holds the role under their own password."""
        account = await sign_up(client)
        tenant_id = account["tenant"]["id"]
        owner = await access(client, account["email"], mfa=True)
        victim = email()
        for route, extra in (("/v1/iam/signup", {"tenant_name": "Mine", "slug": slug()}),
                             ("/v1/iam/register", {})):  # fmt: skip
            squat = await client.post(
                route, json={"email": victim, "password": ATTACKER_PASSWORD} | extra
            )
            assert squat.status_code == 202
        invited = await client.post(
            f"/v1/iam/tenants/{tenant_id}/members",
            json={"email": victim, "role": "admin"},
            headers=bearer(owner),
        )
        assert invited.status_code == 202, invited.text
        assert invited.json()["state"] == "pending"
        # Nothing bound yet, and the attacker's password opens nothing.
        assert (await token(client, victim, ATTACKER_PASSWORD)).status_code == 400
        members = (
            await client.get(f"/v1/iam/tenants/{tenant_id}/members", headers=bearer(owner))
        ).json()
        assert victim not in {m["email"] for m in members}
        # The victim reads their mail and accepts with their own password.
        accepted = await client.post(
            "/v1/iam/invitations/accept",
            json={"token": mailed_token(victim, "gci_"), "password": PASSWORD},
        )
        assert accepted.status_code == 201, accepted.text
        assert accepted.json()["role"] == "admin"
        assert (await token(client, victim, ATTACKER_PASSWORD, tenant=tenant_id)).status_code == 400
        signed_in = await token(client, victim, PASSWORD, tenant=tenant_id)
        assert signed_in.status_code == 200
        # The attacker's pending sign-up link (mailed to the victim, too) cannot now make a
        # second account for the address.
        with psycopg.connect(iam_database) as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM users WHERE email = %s", (victim,)
            ).fetchone()
        assert count == 1

    async def test_an_existing_account_accepts_with_its_password_only(self, client):
        account = await sign_up(client)
        tenant_id = account["tenant"]["id"]
        owner = await access(client, account["email"], mfa=True)
        other = await sign_up(client)  # an account of its own, in another tenant
        seen = mailed_count(other["email"], "gci_")
        invited = await client.post(
            f"/v1/iam/tenants/{tenant_id}/members",
            json={"email": other["email"], "role": "viewer"},
            headers=bearer(owner),
        )
        assert invited.status_code == 202
        link = mailed_token(other["email"], "gci_", seen)
        wrong = await client.post(
            "/v1/iam/invitations/accept", json={"token": link, "password": ATTACKER_PASSWORD}
        )
        assert wrong.status_code == 422
        assert wrong.json()["errors"][0]["field"] == "password"
        right = await client.post(
            "/v1/iam/invitations/accept", json={"token": link, "password": PASSWORD}
        )
        assert right.status_code == 201
        twice = await client.post(
            "/v1/iam/invitations/accept", json={"token": link, "password": PASSWORD}
        )
        assert twice.status_code == 422 and "accepted" in twice.json()["detail"]
        assert (await token(client, other["email"], tenant=tenant_id)).status_code == 200

    async def test_a_revoked_invitation_cannot_be_accepted(self, client):
        account = await sign_up(client)
        tenant_id = account["tenant"]["id"]
        owner = await access(client, account["email"], mfa=True)
        address = email()
        invited = await client.post(
            f"/v1/iam/tenants/{tenant_id}/members",
            json={"email": address, "role": "member"},
            headers=bearer(owner),
        )
        listed = await client.get(f"/v1/iam/tenants/{tenant_id}/invitations", headers=bearer(owner))
        assert invited.json()["id"] in {i["id"] for i in listed.json()}
        revoked = await client.delete(
            f"/v1/iam/tenants/{tenant_id}/invitations/{invited.json()['id']}",
            headers=bearer(owner),
        )
        assert revoked.status_code == 204
        refused = await client.post(
            "/v1/iam/invitations/accept",
            json={"token": mailed_token(address, "gci_"), "password": PASSWORD},
        )
        assert refused.status_code == 422 and "revoked" in refused.json()["detail"]

    async def test_a_project_invitation_binds_a_project_role(self, client):
        account = await sign_up(client)
        tenant_id, project_id = account["tenant"]["id"], account["project"]["id"]
        owner = await access(client, account["email"], mfa=True)
        address = email()
        membership = await invite(
            client, owner, f"/v1/iam/tenants/{tenant_id}/projects/{project_id}", address, "member"
        )
        assert membership["project_id"] == project_id and membership["role"] == "member"
        me = await client.get(
            "/v1/iam/me", headers=bearer(await access(client, address, tenant=tenant_id))
        )
        assert me.json()["project_roles"] == {project_id: ["member"]}
