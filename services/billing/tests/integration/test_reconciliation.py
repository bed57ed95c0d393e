"""Reconciliation against the sandbox's settlement report: a settlement missing from the
ledger (its webhook was lost) and one the provider never reported are flagged, once, and
nothing is corrected."""

import datetime as dt

import pytest

from billing.providers.sandbox import Behaviour

from .conftest import OP, new_tenant
from .test_payments import Sandbox, _pay, _status, _wallet

pytestmark = pytest.mark.integration


@pytest.fixture
def sandbox(client) -> Sandbox:
    return Sandbox(client)


class TestReconciliation:
    async def test_flags_both_sides_once_and_corrects_nothing(self, client, db, sandbox):
        tenant = await new_tenant(db)
        matched = await _pay(client, tenant, amount=1_000_000)
        sandbox.next_behaviour = Behaviour(copies=0)  # settled at the provider, webhook lost
        lost = await _pay(client, tenant, amount=2_000_000)
        unknown = await _pay(client, tenant, amount=3_000_000)
        await sandbox.drain()
        del sandbox.provider.settled[unknown["provider_ref"]]  # the provider never reports it
        assert await _status(client, tenant, lost["id"]) == "pending"
        wallet_before = await _wallet(client, tenant)
        assert wallet_before == 4_000_000

        now = dt.datetime.now(dt.UTC)
        window = {
            "since": (now - dt.timedelta(hours=1)).isoformat(),
            "until": (now + dt.timedelta(minutes=1)).isoformat(),
        }
        r = await client.post("/v1/billing/reconciliation/runs", headers=OP, json=window)
        assert r.status_code == 201, r.text
        found = {(m["kind"], m["payment_id"]) for m in r.json()["mismatches"]}
        assert found == {
            ("missing_in_ledger", lost["id"]),
            ("missing_at_provider", unknown["id"]),
        }
        assert matched["id"] not in {pid for _, pid in found}

        again = await client.post("/v1/billing/reconciliation/runs", headers=OP, json=window)
        assert len(again.json()["mismatches"]) == 2  # seen again...
        listed = (await client.get("/v1/billing/reconciliation/mismatches", headers=OP)).json()
        assert len(listed) == 2  # ...recorded once
        async with db.unit_of_work() as uow:
            events = await uow.fetch_all(
                "SELECT subject FROM outbox WHERE type = 'billing.reconciliation.mismatch'"
            )
        assert sorted(e["subject"] for e in events) == sorted([lost["id"], unknown["id"]])

        assert await _wallet(client, tenant) == wallet_before  # nothing corrected silently
        assert await _status(client, tenant, lost["id"]) == "pending"
