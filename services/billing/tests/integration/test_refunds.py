"""Refunds of settled top-ups through the sandbox provider: whole and partial, declined
(the wallet debit is reversed, never edited), idempotent, and refused when the credit was
already spent or the payment never settled."""

import datetime as dt
import uuid

import pytest

from billing.app.rating import UsageRater
from billing.app.verify import verify_ledger
from billing.providers.sandbox import Behaviour
from billing.settings import BillingSettings

from .conftest import OP, as_tenant, new_tenant, outbox_types, usage_event
from .test_payments import Sandbox, _pay, _status, _wallet

pytestmark = pytest.mark.integration


@pytest.fixture
def sandbox(client) -> Sandbox:
    return Sandbox(client)


async def _refund(client, tenant, payment_id, amount=None, key=None, role="billing"):
    headers = {**as_tenant(tenant, role), "Idempotency-Key": key or uuid.uuid4().hex}
    body = {} if amount is None else {"amount_micros": amount}
    return await client.post(
        f"/v1/billing/tenants/{tenant}/payments/{payment_id}/refunds", headers=headers, json=body
    )


async def _paid(client, sandbox, db, amount=25_000_000):
    tenant = await new_tenant(db)
    payment = await _pay(client, tenant, amount=amount)
    await sandbox.drain()
    assert await _status(client, tenant, payment["id"]) == "settled"
    return tenant, payment["id"]


async def _transfers(db, tenant):
    async with db.unit_of_work() as uow:
        rows = await uow.fetch_all(
            "SELECT kind, amount_micros, reverses FROM transfers WHERE tenant_id = :t ORDER BY seq",
            {"t": tenant},
        )
    return [(r.kind, r.amount_micros, r.reverses is not None) for r in rows]


class TestRefunds:
    async def test_whole_refund_debits_the_wallet_once(self, client, db, sandbox):
        tenant, payment = await _paid(client, sandbox, db)
        r = await _refund(client, tenant, payment, key="refund-all")
        assert r.status_code == 201, r.text
        refund = r.json()
        assert (refund["status"], refund["amount_micros"]) == ("succeeded", 25_000_000)
        assert refund["provider_ref"].startswith("sbx_re_")
        again = await _refund(client, tenant, payment, key="refund-all")
        assert again.status_code == 201 and again.json()["id"] == refund["id"]
        assert await _status(client, tenant, payment) == "refunded"
        assert await _wallet(client, tenant) == 0
        assert await _transfers(db, tenant) == [
            ("top_up", 25_000_000, False),
            ("refund", 25_000_000, False),
        ]
        assert await outbox_types(db, payment) == [
            "billing.payment.settled",
            "billing.payment.refunded",
        ]
        more = await _refund(client, tenant, payment)
        assert more.status_code == 409  # nothing left to refund
        got = await client.get(
            f"/v1/billing/tenants/{tenant}/refunds/{refund['id']}",
            headers=as_tenant(tenant, "admin"),
        )
        assert got.json()["status"] == "succeeded"
        assert (await verify_ledger(db)).ok

    async def test_partial_refunds_then_the_rest(self, client, db, sandbox):
        tenant, payment = await _paid(client, sandbox, db)
        first = await _refund(client, tenant, payment, amount=10_000_000)
        assert first.status_code == 201, first.text
        assert await _status(client, tenant, payment) == "partially_refunded"
        assert await _wallet(client, tenant) == 15_000_000
        too_much = await _refund(client, tenant, payment, amount=15_000_001)
        assert too_much.status_code == 422
        assert "amount_micros" in too_much.text
        rest = await _refund(client, tenant, payment)  # no amount: what is left
        assert rest.json()["amount_micros"] == 15_000_000
        assert await _status(client, tenant, payment) == "refunded"
        assert await _wallet(client, tenant) == 0
        assert sum(a for _, a in sandbox.provider.refunds.values()) == 25_000_000
        assert (await verify_ledger(db)).ok

    async def test_declined_refund_is_reversed_not_edited(self, client, db, sandbox):
        tenant, payment = await _paid(client, sandbox, db)
        sandbox.provider.fail_next_refund = True
        r = await _refund(client, tenant, payment, amount=5_000_000)
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "failed"
        assert "decline" in r.json()["failure_reason"]
        assert await _status(client, tenant, payment) == "settled"
        assert await _wallet(client, tenant) == 25_000_000
        assert await _transfers(db, tenant) == [
            ("top_up", 25_000_000, False),
            ("refund", 5_000_000, False),
            ("reversal", 5_000_000, True),
        ]
        assert await outbox_types(db, payment) == [
            "billing.payment.settled",
            "billing.payment.refund_failed",
        ]
        # the reservation was released: the whole payment is refundable again
        whole = await _refund(client, tenant, payment)
        assert whole.json()["amount_micros"] == 25_000_000
        assert (await verify_ledger(db)).ok

    async def test_spent_credit_is_not_refunded(self, client, db, sandbox):
        tenant, payment = await _paid(client, sandbox, db)
        start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        usage = usage_event(tenant, price_key="gpu:h100-80gb", started_at=start, seconds=3600)
        async with db.unit_of_work() as uow:  # list price 3.60/h: the wallet keeps 21.40
            await UsageRater(BillingSettings()).rate([usage], uow)
            await uow.commit()
        refused = await _refund(client, tenant, payment)
        assert refused.status_code == 409
        assert "spent" in refused.text
        ok = await _refund(client, tenant, payment, amount=21_400_000)
        assert ok.status_code == 201, ok.text
        assert await _status(client, tenant, payment) == "partially_refunded"
        assert await _wallet(client, tenant) == 0

    async def test_only_settled_payments_and_billing_people(self, client, db, sandbox):
        tenant = await new_tenant(db)
        sandbox.next_behaviour = Behaviour(outcome="fail")
        failed = await _pay(client, tenant)
        await sandbox.drain()
        assert (await _refund(client, tenant, failed["id"])).status_code == 409
        tenant2, payment = await _paid(client, sandbox, db)
        assert (await _refund(client, tenant2, payment, role="member")).status_code == 403
        other = await _refund(client, tenant, payment)  # another tenant's payment
        assert other.status_code == 404
        no_key = await client.post(
            f"/v1/billing/tenants/{tenant2}/payments/{payment}/refunds",
            headers=as_tenant(tenant2, "billing"),
            json={},
        )
        assert no_key.status_code == 422
        assert await _wallet(client, tenant2) == 25_000_000
        assert (await client.get(f"/v1/billing/tenants/{tenant2}/balance", headers=OP)).is_success
