"""Monthly statements: line items per SKU/profile and project, JSON and CSV, totals equal
to the ledger's movements."""

import csv
import datetime as dt
import io
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


class TestMonthlyStatement:
    async def test_lines_and_totals_equal_the_ledger_movements(self, client, db):
        tenant = await new_tenant(db)
        for key in ("gpu:h100", "mig:h100:1g.10gb"):
            r = await client.post(
                "/v1/billing/prices",
                headers=OP,
                json={
                    "price_key": key,
                    "micros_per_gpu_hour": 3_600_000,
                    "effective_from": T0.isoformat(),
                },
            )
            assert r.status_code == 201
        await client.post(
            f"/v1/billing/tenants/{tenant}/top-ups", headers=OP, json={"amount_micros": 20_000_000}
        )
        expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat()
        await client.post(
            f"/v1/billing/tenants/{tenant}/grants",
            headers=OP,
            json={"amount_micros": 1_000_000, "expires_at": expires},
        )
        a, b = uuid.uuid4(), uuid.uuid4()
        start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
        reversed_usage = usage_event(tenant, project=a, started_at=start, seconds=600)
        await _rate(
            db,
            [
                usage_event(tenant, project=a, started_at=start, seconds=3600, quantity=2),
                usage_event(
                    tenant, project=b, started_at=start, seconds=60, price_key="mig:h100:1g.10gb"
                ),
                reversed_usage,
            ],
        )
        ledger = (
            await client.get(f"/v1/billing/tenants/{tenant}/ledger?limit=1000", headers=OP)
        ).json()["items"]
        to_reverse = next(
            e["transaction_id"]
            for e in ledger
            if e["kind"] == "usage" and e["billable_seconds"] == 600
        )
        r = await client.post(f"/v1/billing/transactions/{to_reverse}/reversal", headers=OP)
        assert r.status_code == 201

        month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
        path = f"/v1/billing/tenants/{tenant}/statements/{month}"
        statement = (await client.get(path, headers=as_tenant(tenant, "billing"))).json()
        balance = (await client.get(f"/v1/billing/tenants/{tenant}/balance", headers=OP)).json()

        assert statement["opening_micros"] == 0
        assert statement["closing_micros"] == balance["available_micros"]
        assert statement["closing_micros"] == statement["opening_micros"] + sum(
            line["amount_micros"] for line in statement["lines"]
        )
        # 2 GPU-hours + 60 s of a slice = 7.26; the reversed 600 s nets to nothing
        assert statement["usage_micros"] == -(7_200_000 + 60_000)
        by_kind = {}
        for line in statement["lines"]:
            by_kind.setdefault(line["kind"], []).append(line)
        assert sum(x["amount_micros"] for x in by_kind["top_up"]) == 20_000_000
        assert sum(x["amount_micros"] for x in by_kind["grant"]) == 1_000_000
        mig = next(x for x in by_kind["usage"] if x["project_id"] == str(b))
        assert (mig["sku"], mig["mig_profile"], mig["gpu_seconds"]) == ("h100", "1g.10gb", 60)
        gpu_a = next(x for x in by_kind["usage"] if x["project_id"] == str(a))
        assert (gpu_a["intervals"], gpu_a["gpu_seconds"]) == (2, 7200 + 600)
        assert [x["amount_micros"] for x in by_kind["reversal"]] == [600_000]

        r = await client.get(path + "?format=csv", headers=OP)
        assert r.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(r.text)))
        assert rows[1] == ["opening_micros", "0"]
        assert rows[-1] == ["closing_micros", str(statement["closing_micros"])]
        assert sum(int(row[-1]) for row in rows[3:-1]) == statement["closing_micros"]

        last_month = dt.datetime.now(dt.UTC).replace(day=1) - dt.timedelta(days=1)
        empty = (
            await client.get(
                f"/v1/billing/tenants/{tenant}/statements/{last_month:%Y-%m}", headers=OP
            )
        ).json()
        assert empty["lines"] == [] and empty["closing_micros"] == 0

    async def test_month_must_be_a_month(self, client, db):
        tenant = await new_tenant(db)
        r = await client.get(f"/v1/billing/tenants/{tenant}/statements/2026-13", headers=OP)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "month"
