"""billing's HTTP API served in process on a fresh database (Kafka off: events are asserted
as outbox rows). Tenants arrive through the tenant projection handler, usage through the
rating use case, exactly as the consumers call them."""

import datetime as dt
import uuid

import pytest

from billing.app.rating import UsageRater
from billing.settings import BillingSettings

from .conftest import OP, T0, as_tenant, new_tenant, usage_event

pytestmark = pytest.mark.integration


async def _rate(db, events):
    async with db.unit_of_work() as uow:
        await UsageRater(BillingSettings()).rate(events, uow)
        await uow.commit()


class TestBalanceAndLedger:
    async def test_top_up_grant_usage_ledger_usage_report_reversal_verify(self, client, db):
        tenant = await new_tenant(db)
        r = await client.post(
            "/v1/billing/prices",
            headers=OP,
            json={
                "price_key": "gpu:h100",
                "micros_per_gpu_hour": 3_600_000,
                "effective_from": T0.isoformat(),
            },
        )
        assert r.status_code == 201, r.text

        body = {"amount_micros": 20_000_000}
        key = {**OP, "Idempotency-Key": "top-up-1"}
        first = await client.post(f"/v1/billing/tenants/{tenant}/top-ups", headers=key, json=body)
        again = await client.post(f"/v1/billing/tenants/{tenant}/top-ups", headers=key, json=body)
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json()  # replayed, not credited twice
        other = await client.post(
            f"/v1/billing/tenants/{tenant}/top-ups", headers=key, json={"amount_micros": 1}
        )
        assert other.status_code == 422

        expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat()
        r = await client.post(
            f"/v1/billing/tenants/{tenant}/grants",
            headers=OP,
            json={"amount_micros": 5_000_000, "expires_at": expires},
        )
        assert r.status_code == 201, r.text

        project = uuid.uuid4()
        start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        window = "?since=" + (start - dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z")
        usage = [usage_event(tenant, project=project, started_at=start, seconds=3600)]
        await _rate(db, usage)  # 3.60: all from the grant (5.00)

        r = await client.get(f"/v1/billing/tenants/{tenant}/balance", headers=OP)
        balance = r.json()
        assert balance["wallet_micros"] == 20_000_000
        assert balance["grants"][0]["remaining_micros"] == 1_400_000
        assert balance["available_micros"] == 21_400_000
        assert balance["standing"] == "ok"

        page = (await client.get(f"/v1/billing/tenants/{tenant}/ledger?limit=2", headers=OP)).json()
        assert [e["kind"] for e in page["items"]] == ["top_up", "grant"]
        rest = (
            await client.get(
                f"/v1/billing/tenants/{tenant}/ledger?after={page['next_after']}", headers=OP
            )
        ).json()
        assert [e["kind"] for e in rest["items"]] == ["usage"]
        usage_tx = rest["items"][0]["transaction_id"]

        report = (
            await client.get(f"/v1/billing/tenants/{tenant}/usage{window}", headers=OP)
        ).json()
        assert report["items"] == [
            {
                "project_id": str(project),
                "price_key": "gpu:h100",
                "intervals": 1,
                "gpu_seconds": 3600,
                "charged_micros": 3_600_000,
                "reversed_micros": 0,
                "net_micros": 3_600_000,
            }
        ]

        r = await client.post(f"/v1/billing/transactions/{usage_tx}/reversal", headers=OP)
        assert r.status_code == 201, r.text
        r = await client.post(f"/v1/billing/transactions/{usage_tx}/reversal", headers=OP)
        assert r.status_code == 409
        report = (
            await client.get(f"/v1/billing/tenants/{tenant}/usage{window}", headers=OP)
        ).json()
        assert report["items"][0]["net_micros"] == 0

        verify = (await client.get("/v1/billing/ledger/verify", headers=OP)).json()
        assert verify["ok"] is True and verify["differences"] == []
        assert verify["transfers"] == 4


class TestAuthorization:
    async def test_tenant_reads_need_a_billing_role_of_that_tenant(self, client, db):
        tenant = await new_tenant(db)
        path = f"/v1/billing/tenants/{tenant}/balance"
        assert (await client.get(path)).status_code == 401
        assert (await client.get(path, headers=as_tenant(tenant, "billing"))).status_code == 200
        assert (await client.get(path, headers=as_tenant(tenant, "admin"))).status_code == 200
        assert (await client.get(path, headers=as_tenant(tenant, "member"))).status_code == 403
        stranger = as_tenant(uuid.uuid4(), "admin")
        assert (await client.get(path, headers=stranger)).status_code == 404

    async def test_money_is_created_and_corrected_by_operators_only(self, client, db):
        tenant = await new_tenant(db)
        admin = as_tenant(tenant, "admin")
        r = await client.post(
            f"/v1/billing/tenants/{tenant}/top-ups", headers=admin, json={"amount_micros": 1}
        )
        assert r.status_code == 403
        assert (await client.get("/v1/billing/ledger/verify", headers=admin)).status_code == 403

    @pytest.mark.parametrize("role", ["member", "viewer"])
    async def test_members_and_viewers_read_no_billing(self, client, db, role):
        tenant = await new_tenant(db)
        caller = as_tenant(tenant, role)
        for path in ("balance", "ledger", "usage", "statements/2026-01"):
            r = await client.get(f"/v1/billing/tenants/{tenant}/{path}", headers=caller)
            assert r.status_code == 403, (path, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
        r = await client.get(
            f"/v1/billing/tenants/{tenant}/payments/{uuid.uuid4()}", headers=caller
        )
        assert r.status_code == 403
        paid = await client.post(
            f"/v1/billing/tenants/{tenant}/payments",
            json={"amount_micros": 1_000_000},
            headers=caller | {"Idempotency-Key": uuid.uuid4().hex},
        )
        assert paid.status_code == 403

    async def test_an_admin_reads_but_does_not_pay(self, client, db):
        """billing.manage is owner and billing only (docs/iam.md); billing.read adds admin."""
        tenant = await new_tenant(db)
        admin = as_tenant(tenant, "admin")
        balance = f"/v1/billing/tenants/{tenant}/balance"
        assert (await client.get(balance, headers=admin)).status_code == 200
        paid = await client.post(
            f"/v1/billing/tenants/{tenant}/payments",
            json={"amount_micros": 1_000_000},
            headers=admin | {"Idempotency-Key": uuid.uuid4().hex},
        )
        assert paid.status_code == 403 and "billing.manage" in paid.json()["detail"]
        refund = await client.post(
            f"/v1/billing/tenants/{tenant}/payments/{uuid.uuid4()}/refunds",
            json={},
            headers=admin | {"Idempotency-Key": uuid.uuid4().hex},
        )
        assert refund.status_code == 403

    async def test_a_service_account_reads_and_moves_no_money(self, client, db):
        """A service account holds one project role and no tenant role: billing's
        permissions are tenant-wide, so it is refused (403, its own tenant)."""
        tenant = await new_tenant(db)
        for role in ("admin", "member"):
            account = as_tenant(tenant, role, uuid.uuid4())
            for path in ("balance", "usage", "ledger"):
                r = await client.get(f"/v1/billing/tenants/{tenant}/{path}", headers=account)
                assert r.status_code == 403, (path, r.text)
            paid = await client.post(
                f"/v1/billing/tenants/{tenant}/payments",
                json={"amount_micros": 1_000_000},
                headers=account | {"Idempotency-Key": uuid.uuid4().hex},
            )
            assert paid.status_code == 403
        stranger = as_tenant(uuid.uuid4(), "admin", uuid.uuid4())
        r = await client.get(f"/v1/billing/tenants/{tenant}/balance", headers=stranger)
        assert r.status_code == 404

    async def test_validation_names_the_field(self, client, db):
        tenant = await new_tenant(db)
        r = await client.post(
            f"/v1/billing/tenants/{tenant}/grants",
            headers=OP,
            json={"amount_micros": 5, "expires_at": "2001-01-01T00:00:00Z"},
        )
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "expires_at"
