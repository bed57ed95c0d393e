"""Reconciliation against the sandbox's settlement report: a settlement missing from the
ledger (its webhook was lost) and one the provider never reported are flagged, once, and
nothing is corrected."""

import asyncio
import datetime as dt

import pytest

from billing.app.reconciliation import Schedule, scheduled_reconciliation
from billing.bootstrap import jobs
from billing.providers.sandbox import Behaviour
from billing.settings import BillingSettings

from .conftest import OP, billing_client, new_tenant
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


class TestScheduledReconciliation:
    async def test_scheduled_run_flags_a_lost_webhook_and_skips_a_recent_turn(
        self, client, db, sandbox
    ):
        tenant = await new_tenant(db)
        sandbox.next_behaviour = Behaviour(copies=0)  # settled at the provider, webhook lost
        lost = await _pay(client, tenant, amount=2_000_000)
        await sandbox.drain()
        schedule = Schedule(interval_s=3600, lookback_s=3600, grace_s=60)
        # a moment later the grace still hides the payment: its webhook may be in flight
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        early = await scheduled_reconciliation(db, sandbox.provider, schedule, now=soon)
        assert early is not None and early.mismatches == []
        # the next turn within the interval is skipped (another replica, or this one, ran)
        later = soon + dt.timedelta(seconds=120)
        assert await scheduled_reconciliation(db, sandbox.provider, schedule, now=later) is None
        # a turn after the interval, past the grace: the lost webhook is flagged
        next_turn = soon + dt.timedelta(seconds=3600)
        result = await scheduled_reconciliation(db, sandbox.provider, schedule, now=next_turn)
        assert result is not None
        assert [(m.kind, str(m.payment_id)) for m in result.mismatches] == [
            ("missing_in_ledger", lost["id"])
        ]
        runs = (await client.get("/v1/billing/reconciliation/runs", headers=OP)).json()
        assert [r["mismatches"] for r in runs] == [1, 0]
        assert await _status(client, tenant, lost["id"]) == "pending"  # nothing corrected

    async def test_the_app_runs_the_schedule(self, billing_url, db):
        """The timer as bootstrap wires it: a short interval on the test's app."""
        billing = BillingSettings(
            reconcile_interval_s=0.05, reconcile_lookback_s=3600, reconcile_grace_s=-60
        )
        schedule = [job for job in jobs(billing) if job.name == "reconciliation"]
        async with billing_client(billing_url, jobs=schedule) as client:
            sandbox = Sandbox(client)
            tenant = await new_tenant(db)
            sandbox.next_behaviour = Behaviour(copies=0)
            lost = await _pay(client, tenant, amount=1_000_000)
            await sandbox.drain()
            for _ in range(200):  # a turn comes every interval
                mismatches = "/v1/billing/reconciliation/mismatches"
                listed = (await client.get(mismatches, headers=OP)).json()
                if listed:
                    break
                await asyncio.sleep(0.05)
        assert [(m["kind"], m["payment_id"]) for m in listed] == [("missing_in_ledger", lost["id"])]

    async def test_interval_zero_disables_the_schedule(self, billing_url):
        schedule = [
            job
            for job in jobs(BillingSettings(reconcile_interval_s=0))
            if job.name == "reconciliation"
        ]
        async with billing_client(billing_url, jobs=schedule) as client:
            assert "reconciliation" not in client.app.state.runtime.running_jobs()
