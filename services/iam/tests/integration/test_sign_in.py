"""Sign-up, sign-in, refresh rotation with reuse detection, JWKS and key rotation, tenant
suspension, throttling: against iam in process on real PostgreSQL."""

import uuid

import jwt
import psycopg
import pytest

from platformkit.tokens import AccessTokenVerifier, JwksCache

from .conftest import (
    OPERATOR_TOKEN,
    PASSWORD,
    access,
    add_member,
    bearer,
    email,
    invite,
    mailed,
    mailed_count,
    sign_up,
    slug,
    token,
    verify,
)

pytestmark = pytest.mark.integration


class JwksFrom:
    def __init__(self, client) -> None:
        self.client = client

    async def fetch(self):
        return (await self.client.get("/v1/iam/.well-known/jwks.json")).json()


def verifier(client) -> AccessTokenVerifier:
    settings = client.app.state.settings
    return AccessTokenVerifier(
        JwksCache(JwksFrom(client), min_refresh_interval_s=0),
        issuer=settings.token_issuer,
        audience=settings.token_audience,
    )


class TestSignUp:
    async def test_creates_tenant_owner_and_default_project_with_events(self, client, iam_database):
        account = await sign_up(client)
        assert account["tenant"]["status"] == "active"
        assert account["project"]["slug"] == "default"
        with psycopg.connect(iam_database) as conn:
            types = {
                row[0]
                for row in conn.execute(
                    "SELECT type FROM outbox WHERE tenant = %s OR subject = %s",
                    (account["tenant"]["id"], account["user"]["id"]),
                )
            }
            stored = conn.execute(
                "SELECT password_hash FROM users WHERE id = %s", (account["user"]["id"],)
            ).fetchone()[0]
        assert types == {
            "iam.tenant.created",
            "iam.user.registered",
            "iam.project.created",
            "iam.membership.granted",
        }
        assert stored.startswith("$argon2id$") and PASSWORD not in stored

    async def test_a_taken_email_answers_like_a_new_one_and_creates_nothing(
        self, client, iam_database
    ):
        account = await sign_up(client)
        again_slug, fresh = slug(), email()
        taken = await client.post(
            "/v1/iam/signup",
            json={"tenant_name": "X", "slug": again_slug, "email": account["email"],
                  "password": PASSWORD},
        )  # fmt: skip
        new = await client.post(
            "/v1/iam/signup",
            json={"tenant_name": "X", "slug": slug(), "email": fresh, "password": PASSWORD},
        )
        assert taken.status_code == new.status_code == 202
        assert taken.json() == new.json()
        assert set(taken.headers) == set(new.headers)
        # The owner of the taken address is told, with no link that creates anything.
        notice = await _until_mail(account["email"], "already has an account")
        assert "token=" not in notice.body
        with psycopg.connect(iam_database) as conn:
            assert (
                conn.execute("SELECT 1 FROM tenants WHERE slug = %s", (again_slug,)).fetchone()
                is None
            )
            assert (
                conn.execute(
                    "SELECT 1 FROM email_verifications WHERE tenant_slug = %s", (again_slug,)
                ).fetchone()
                is None
            )

    async def test_idempotency_key_replays_without_a_second_message(self, client):
        body = {"tenant_name": "Once", "slug": slug(), "email": email(), "password": PASSWORD}
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        first = await client.post("/v1/iam/signup", json=body, headers=headers)
        second = await client.post("/v1/iam/signup", json=body, headers=headers)
        assert first.status_code == second.status_code == 202
        assert first.json() == second.json()
        await verify(client, body["email"])
        assert mailed_count(body["email"], "gcv_") == 1

    async def test_short_password_names_the_field(self, client):
        body = {"tenant_name": "X", "slug": slug(), "email": email(), "password": "short"}
        response = await client.post("/v1/iam/signup", json=body)
        assert response.status_code == 400
        assert "password" in response.json()["detail"]

    async def test_a_bare_tenant_is_an_operators(self, client):
        body = {"name": "Demo", "slug": slug()}
        assert (await client.post("/v1/iam/tenants", json=body)).status_code == 401
        made = await client.post("/v1/iam/tenants", json=body, headers=bearer(OPERATOR_TOKEN))
        assert made.status_code == 201


async def _until_mail(to: str, subject_part: str):
    import asyncio

    for _ in range(100):
        found = [m for m in mailed(to) if subject_part in m.subject + m.body]
        if found:
            return found[-1]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no message to {to} mentioning {subject_part!r}")


class TestPasswordGrant:
    async def test_access_token_claims(self, client):
        account = await sign_up(client)
        response = await token(client, account["email"])
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == 300
        assert body["refresh_token"].startswith("gcr_")
        header = jwt.get_unverified_header(body["access_token"])
        assert header["alg"] == "EdDSA" and header["typ"] == "at+jwt"
        claims = await verifier(client).claims(body["access_token"])
        assert claims["sub"] == account["user"]["id"]
        assert claims["tenant"] == account["tenant"]["id"]
        assert claims["roles"] == ["owner"] and claims["amr"] == ["pwd"]
        assert claims["exp"] - claims["iat"] == 300
        me = await client.get("/v1/iam/me", headers=bearer(body["access_token"]))
        assert me.json()["roles"] == ["owner"]

    async def test_wrong_password_and_unknown_account_look_the_same(self, client):
        account = await sign_up(client)
        wrong = await token(client, account["email"], "not the password at all")
        nobody = await token(client, email(), "not the password at all")
        assert wrong.status_code == nobody.status_code == 400
        assert wrong.json()["detail"] == nobody.json()["detail"]

    async def test_sign_ins_and_failures_are_events_without_secrets(self, client, iam_database):
        account = await sign_up(client)
        form = {"grant_type": "password", "username": account["email"]}
        forwarded = {"X-Forwarded-For": "203.0.113.77"}
        ok = await client.post(
            "/v1/iam/token", data={**form, "password": PASSWORD}, headers=forwarded
        )
        assert ok.status_code == 200
        bad = {**form, "password": "wrong password!!"}
        assert (await client.post("/v1/iam/token", data=bad, headers=forwarded)).status_code == 400
        user_id = account["user"]["id"]
        with psycopg.connect(iam_database) as conn:
            rows = conn.execute(
                "SELECT type, actor, client_address, payload FROM outbox WHERE subject = %s"
                " AND type LIKE 'iam.auth.%%' ORDER BY seq",
                (user_id,),
            ).fetchall()
        assert [(r[0], r[1], r[2]) for r in rows] == [
            ("iam.auth.signed-in", user_id, "203.0.113.77"),
            ("iam.auth.sign-in-failed", user_id, "203.0.113.77"),
        ]
        assert all(PASSWORD.encode() not in bytes(r[3]) for r in rows)
        assert b"wrong password" not in bytes(rows[1][3])

    async def test_repeated_failures_lock_the_account(self, client):
        account = await sign_up(client)
        for _ in range(5):
            assert (await token(client, account["email"], "wrong password!!")).status_code == 400
        locked = await token(client, account["email"])
        assert locked.status_code == 429
        assert int(locked.headers["retry-after"]) > 0

    async def test_a_suspended_tenant_gets_no_tokens(self, client):
        account = await sign_up(client)
        suspended = await client.post(
            f"/v1/iam/tenants/{account['tenant']['id']}/suspend",
            json={"reason": "unpaid"},
            headers=bearer(OPERATOR_TOKEN),
        )
        assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
        assert (await token(client, account["email"])).status_code == 400


class TestRefresh:
    async def _refresh(self, client, refresh_token: str):
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return await client.post("/v1/iam/token", data=form)

    async def test_rotation_and_reuse_revokes_the_family(self, client):
        account = await sign_up(client)
        first = (await token(client, account["email"])).json()["refresh_token"]
        rotated = await self._refresh(client, first)
        assert rotated.status_code == 200
        second = rotated.json()["refresh_token"]
        assert second != first
        # The first token is presented again: someone else holds it.
        reused = await self._refresh(client, first)
        assert reused.status_code == 400 and "revoked" in reused.json()["detail"]
        # ...so the legitimate, newer token is dead too.
        assert (await self._refresh(client, second)).status_code == 400

    async def test_a_refreshed_token_carries_current_roles(self, client):
        account = await sign_up(client)
        owner = await access(client, account["email"], mfa=True)
        tenant_id = account["tenant"]["id"]
        viewer = await add_member(client, owner, tenant_id, "viewer")
        refresh = (await token(client, viewer)).json()["refresh_token"]
        members = (
            await client.get(f"/v1/iam/tenants/{tenant_id}/members", headers=bearer(owner))
        ).json()
        membership = next(m for m in members if m["email"] == viewer)
        await invite(client, owner, f"/v1/iam/tenants/{tenant_id}", viewer, "admin")
        refreshed = await self._refresh(client, refresh)
        claims = await verifier(client).claims(refreshed.json()["access_token"])
        assert claims["roles"] == ["admin"]
        assert membership["role"] == "viewer"

    async def test_garbage_refresh_token(self, client):
        assert (await self._refresh(client, "gcr_nope")).status_code == 400
        assert (await self._refresh(client, "nope")).status_code == 400


class TestKeys:
    async def test_discovery_and_jwks(self, client):
        discovery = (await client.get("/v1/iam/.well-known/openid-configuration")).json()
        assert discovery["issuer"] == client.app.state.settings.token_issuer
        assert discovery["jwks_uri"].endswith("/.well-known/jwks.json")
        keys = (await client.get("/v1/iam/.well-known/jwks.json")).json()["keys"]
        assert keys and all(set(k) == {"kty", "crv", "x", "kid", "alg", "use"} for k in keys)
        assert all(k["alg"] == "EdDSA" and "d" not in k for k in keys)

    async def test_rotation_keeps_the_retired_key_published(self, client, iam_database):
        account = await sign_up(client)
        before = await access(client, account["email"])
        rotated = await client.post("/v1/iam/signing-keys/rotate", headers=bearer(OPERATOR_TOKEN))
        assert rotated.status_code == 200
        kids = {
            k["kid"] for k in (await client.get("/v1/iam/.well-known/jwks.json")).json()["keys"]
        }
        assert {rotated.json()["active"], jwt.get_unverified_header(before)["kid"]} <= kids
        after = await access(client, account["email"])
        assert jwt.get_unverified_header(after)["kid"] == rotated.json()["active"]
        for t in (before, after):
            assert (await client.get("/v1/iam/me", headers=bearer(t))).status_code == 200
        # Private halves are stored as PKCS#8, never in the JWKS.
        with psycopg.connect(iam_database) as conn:
            row = conn.execute("SELECT public_jwk FROM signing_keys LIMIT 1").fetchone()
        assert "d" not in row[0]


class TestMemberships:
    async def test_viewer_reads_but_cannot_manage(self, client):
        account = await sign_up(client)
        tenant_id = account["tenant"]["id"]
        owner = await access(client, account["email"], mfa=True)
        viewer = await access(client, await add_member(client, owner, tenant_id, "viewer"))
        assert (
            await client.get(f"/v1/iam/tenants/{tenant_id}", headers=bearer(viewer))
        ).status_code == 200
        created = await client.post(
            f"/v1/iam/tenants/{tenant_id}/projects",
            json={"name": "P", "slug": "p-1"},
            headers=bearer(viewer),
        )
        assert created.status_code == 403

    async def test_admins_cannot_make_owners_and_the_last_owner_stays(self, client):
        account = await sign_up(client)
        tenant_id = account["tenant"]["id"]
        owner = await access(client, account["email"], mfa=True)
        admin = await access(client, await add_member(client, owner, tenant_id, "admin"), mfa=True)
        newcomer = email()
        refused = await client.post(
            f"/v1/iam/tenants/{tenant_id}/members",
            json={"email": newcomer, "role": "owner"},
            headers=bearer(admin),
        )
        assert refused.status_code == 403
        members = (
            await client.get(f"/v1/iam/tenants/{tenant_id}/members", headers=bearer(owner))
        ).json()
        owner_membership = next(m for m in members if m["role"] == "owner")
        last = await client.delete(
            f"/v1/iam/tenants/{tenant_id}/members/{owner_membership['id']}", headers=bearer(owner)
        )
        assert last.status_code == 409

    async def test_project_role_reaches_only_its_project(self, client):
        account = await sign_up(client)
        tenant_id, project_id = account["tenant"]["id"], account["project"]["id"]
        owner = await access(client, account["email"], mfa=True)
        other = (
            await client.post(
                f"/v1/iam/tenants/{tenant_id}/projects",
                json={"name": "Other", "slug": "other"},
                headers=bearer(owner),
            )
        ).json()
        user = await access(
            client, await add_member(client, owner, tenant_id, "viewer", project_id)
        )
        mine = await client.get(
            f"/v1/iam/tenants/{tenant_id}/projects/{project_id}", headers=bearer(user)
        )
        theirs = await client.get(
            f"/v1/iam/tenants/{tenant_id}/projects/{other['id']}", headers=bearer(user)
        )
        assert mine.status_code == 200 and theirs.status_code == 403


class TestServiceAccounts:
    async def _setup(self, client):
        account = await sign_up(client)
        tenant_id, project_id = account["tenant"]["id"], account["project"]["id"]
        owner = await access(client, account["email"], mfa=True)
        base = f"/v1/iam/tenants/{tenant_id}/projects/{project_id}/service-accounts"
        sa = (
            await client.post(base, json={"name": "ci", "role": "member"}, headers=bearer(owner))
        ).json()
        return owner, f"{base}/{sa['id']}", sa

    async def _cc(self, client, api_key: str):
        form = {"grant_type": "client_credentials", "client_secret": api_key}
        return await client.post("/v1/iam/token", data=form)

    async def test_key_shown_once_then_exchanged_for_a_project_bound_token(self, client):
        owner, sa_path, sa = await self._setup(client)
        issued = await client.post(
            f"{sa_path}/keys", json={"expires_in_days": 30}, headers=bearer(owner)
        )
        assert issued.status_code == 201 and issued.headers["cache-control"] == "no-store"
        api_key = issued.json()["api_key"]
        assert api_key.startswith("gck_") and api_key.startswith(issued.json()["key"]["prefix"])
        listed = await client.get(f"{sa_path}/keys", headers=bearer(owner))
        assert api_key.split("_")[-1] not in listed.text
        exchanged = await self._cc(client, api_key)
        assert exchanged.status_code == 200 and "refresh_token" not in exchanged.json()
        principal = await verifier(client).verify(exchanged.json()["access_token"])
        assert principal.kind == "service_account"
        assert principal.project_ids == {uuid.UUID(sa["project_id"])}
        assert principal.roles_in_project(sa["project_id"]) == {"member"}

    async def test_revoked_and_forged_keys_are_refused(self, client, iam_database):
        owner, sa_path, _ = await self._setup(client)
        issued = (await client.post(f"{sa_path}/keys", json={}, headers=bearer(owner))).json()
        assert (await self._cc(client, issued["api_key"] + "x")).status_code == 401
        revoked = await client.delete(
            f"{sa_path}/keys/{issued['key']['id']}", headers=bearer(owner)
        )
        assert revoked.status_code == 204
        assert (await self._cc(client, issued["api_key"])).status_code == 401
        with psycopg.connect(iam_database) as conn:
            event = conn.execute(
                "SELECT payload FROM outbox WHERE type = 'iam.api-key.revoked'"
                " AND convert_from(payload, 'UTF8') LIKE %s",
                (f"%{issued['key']['id']}%",),
            ).fetchone()
        assert (
            event is not None and issued["api_key"].split("_")[-1] not in bytes(event[0]).decode()
        )

    async def test_rotation_keeps_both_keys_valid_during_the_overlap(self, client):
        owner, sa_path, _ = await self._setup(client)
        old = (await client.post(f"{sa_path}/keys", json={}, headers=bearer(owner))).json()
        new = (
            await client.post(
                f"{sa_path}/keys",
                json={"replaces": old["key"]["id"], "overlap_hours": 1},
                headers=bearer(owner),
            )
        ).json()
        assert (await self._cc(client, old["api_key"])).status_code == 200
        assert (await self._cc(client, new["api_key"])).status_code == 200
        keys = {
            k["id"]: k for k in (await client.get(f"{sa_path}/keys", headers=bearer(owner))).json()
        }
        assert keys[old["key"]["id"]]["expires_at"] < keys[new["key"]["id"]]["expires_at"]
