"""Top-ups through the sandbox payment provider: signed asynchronous webhooks that settle,
fail, repeat or come late; a forged signature is refused; the ledger is credited on
settlement only, once."""

import asyncio
import json
import time
import uuid

import pytest

from billing.app.verify import verify_ledger
from billing.providers.sandbox import SIGNATURE_HEADER, Behaviour, SandboxProvider, sign

from .conftest import OP, as_tenant, new_tenant, outbox_types

pytestmark = pytest.mark.integration


class Sandbox:
    """The sandbox provider of the app under test. Its webhooks are sent from the app's own
    event loop (thread); they are queued there and posted to the app's webhook route from the
    test's loop by `drain`, in the order and number the sandbox sent them."""

    def __init__(self, client) -> None:
        self.client = client
        self.sent: list[tuple[bytes, dict[str, str]]] = []
        self.provider = SandboxProvider(
            secret=b"test-secret-" + uuid.uuid4().hex.encode(), deliver=self._queue
        )
        client.app.state.payment_provider = self.provider

    async def _queue(self, body: bytes, headers: dict[str, str]) -> None:
        self.sent.append((body, headers))

    @property
    def next_behaviour(self) -> Behaviour:
        return self.provider.next_behaviour

    @next_behaviour.setter
    def next_behaviour(self, behaviour: Behaviour) -> None:
        self.provider.next_behaviour = behaviour

    async def drain(self) -> None:
        await self.provider.drain()
        while self.sent:
            body, headers = self.sent.pop(0)
            r = await self.client.post(
                "/v1/billing/webhooks/sandbox", content=body, headers=headers
            )
            assert r.status_code == 200, r.text


@pytest.fixture
def sandbox(client) -> Sandbox:
    return Sandbox(client)


async def _pay(client, tenant, amount=25_000_000, key=None):
    headers = {**as_tenant(tenant, "billing"), "Idempotency-Key": key or uuid.uuid4().hex}
    r = await client.post(
        f"/v1/billing/tenants/{tenant}/payments", headers=headers, json={"amount_micros": amount}
    )
    assert r.status_code == 201, r.text
    return r.json()


async def _status(client, tenant, payment_id):
    r = await client.get(f"/v1/billing/tenants/{tenant}/payments/{payment_id}", headers=OP)
    return r.json()["status"]


async def _wallet(client, tenant):
    r = await client.get(f"/v1/billing/tenants/{tenant}/balance", headers=OP)
    return r.json()["wallet_micros"]


class TestSandboxPayments:
    async def test_settled_webhook_credits_the_wallet_once(self, client, db, sandbox):
        tenant = await new_tenant(db)
        payment = await _pay(client, tenant)
        await sandbox.drain()
        assert await _status(client, tenant, payment["id"]) == "settled"
        assert await _wallet(client, tenant) == 25_000_000
        assert await outbox_types(db, payment["id"]) == ["billing.payment.settled"]
        assert (await verify_ledger(db)).ok

    async def test_duplicated_webhooks_change_nothing(self, client, db, sandbox):
        tenant = await new_tenant(db)
        sandbox.next_behaviour = Behaviour(copies=3)
        payment = await _pay(client, tenant)
        await sandbox.drain()
        assert await _status(client, tenant, payment["id"]) == "settled"
        assert await _wallet(client, tenant) == 25_000_000

    async def test_repeated_request_is_one_payment(self, client, db, sandbox):
        tenant = await new_tenant(db)
        first = await _pay(client, tenant, key="pay-once")
        again = await _pay(client, tenant, key="pay-once")
        await sandbox.drain()
        assert first["id"] == again["id"]
        assert await _wallet(client, tenant) == 25_000_000

    async def test_failed_payment_credits_nothing(self, client, db, sandbox):
        tenant = await new_tenant(db)
        sandbox.next_behaviour = Behaviour(outcome="fail")
        payment = await _pay(client, tenant)
        await sandbox.drain()
        assert await _status(client, tenant, payment["id"]) == "failed"
        assert await _wallet(client, tenant) == 0
        assert await outbox_types(db, payment["id"]) == ["billing.payment.failed"]

    async def test_delayed_webhook_keeps_the_payment_pending_until_it_arrives(
        self, client, db, sandbox
    ):
        tenant = await new_tenant(db)
        sandbox.next_behaviour = Behaviour(delay_s=0.5)
        payment = await _pay(client, tenant)
        assert payment["status"] == "pending"
        await asyncio.sleep(0.1)
        assert await _wallet(client, tenant) == 0  # credited on settlement only
        await sandbox.drain()
        assert await _status(client, tenant, payment["id"]) == "settled"
        assert await _wallet(client, tenant) == 25_000_000

    async def test_forged_signature_is_refused(self, client, db, sandbox):
        tenant = await new_tenant(db)
        sandbox.next_behaviour = Behaviour(outcome="fail")
        payment = await _pay(client, tenant)
        await sandbox.drain()  # the real outcome: failed
        forged = json.dumps(
            {
                "id": "evt_forged",
                "type": "payment.settled",
                "payment_id": payment["id"],
                "provider_ref": payment["provider_ref"],
            }
        ).encode()
        for signature in (sign(b"wrong-secret", forged, int(time.time())), "", "t=1,v1=00"):
            r = await client.post(
                "/v1/billing/webhooks/sandbox",
                content=forged,
                headers={SIGNATURE_HEADER: signature},
            )
            assert r.status_code == 400
        assert await _status(client, tenant, payment["id"]) == "failed"
        assert await _wallet(client, tenant) == 0

    async def test_only_the_tenants_billing_people_pay(self, client, db, sandbox):
        tenant = await new_tenant(db)
        headers = {**as_tenant(tenant, "member"), "Idempotency-Key": "k"}
        r = await client.post(
            f"/v1/billing/tenants/{tenant}/payments", headers=headers, json={"amount_micros": 1}
        )
        assert r.status_code == 403
