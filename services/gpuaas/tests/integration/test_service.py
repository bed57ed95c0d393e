"""The whole gpuaas service (HTTP app + runtime) on real Kafka and PostgreSQL: the routes,
the outbox relay to Kafka, and billing's exhausted event releasing a tenant's allocations."""

import asyncio
import dataclasses
import datetime as dt
import uuid

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from gpuaas.bootstrap import DEFINITION
from gpucloud_contracts.events.billing import BalanceChanged, PriceChanged
from platformkit import kafka
from platformkit.envelope import new_event
from platformkit.http import build_service_app
from platformkit.kafka import KafkaSettings
from platformkit.settings import ServiceSettings

from .conftest import new_project

pytestmark = pytest.mark.integration
TOKEN = "test-operator-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _settings(infra, gpuaas_url) -> ServiceSettings:
    return ServiceSettings(
        # A unique service name: its own consumer group, apart from the running fleet's.
        service_name=f"gpuaas-test-{uuid.uuid4().hex[:8]}",
        database_url=gpuaas_url,
        kafka=infra.kafka,
        operator_token=TOKEN,
        # no heartbeats: its name is no service of the fleet (audit dead-letters those)
        heartbeat_interval_s=0,
        outbox_poll_interval_s=0.2,
    )


@pytest.fixture
async def client(infra, gpuaas_url):
    app = build_service_app(DEFINITION, _settings(infra, gpuaas_url))
    async with AsyncTestClient(app) as c:
        yield c


@pytest.fixture
async def http_only(infra, gpuaas_url):
    """Without the balance consumer: stopping a consumer still joining its group can take
    a session timeout, and these tests do not need it."""
    definition = dataclasses.replace(DEFINITION, subscriptions=())
    async with AsyncTestClient(build_service_app(definition, _settings(infra, gpuaas_url))) as c:
        yield c


async def _register(client, gpus=1):
    r = await client.post(
        "/v1/gpu/nodes/register",
        json={
            "name": f"n-{uuid.uuid4().hex[:8]}",
            "gpus": [
                {"index": i, "sku": "h100-80gb", "device_uuid": f"GPU-{i}"} for i in range(gpus)
            ],
        },
        headers=AUTH,
    )
    assert r.status_code == 201, r.text
    return r.json()


async def _eventually(check, within=30.0):
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.3)


async def _keys_on(settings: KafkaSettings, topic: str, key: str, want: int) -> list[str]:
    consumer = kafka.feed_consumer(settings, topic, "gpuaas-tests")
    await consumer.start()
    found: list[str] = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(found) < want and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    if r.key and r.key.decode() == key:
                        found.append(dict(r.headers)["ce_type"].decode())
    finally:
        await consumer.stop()
    return found


async def test_http_routes_and_events_reach_kafka(client, infra, db):
    node = await _register(client)
    tenant, project = await new_project(db)
    base = f"/v1/gpu/tenants/{tenant}/projects/{project}/allocations"
    r = await client.post(
        base,
        json={"sku": "h100-80gb", "mig_profile": "1g.10gb"},
        headers={**AUTH, "Idempotency-Key": "a1"},
    )
    assert r.status_code == 201, r.text
    allocation = r.json()
    # A 1g on an empty GPU goes to slice 4: a 4g still fits at 0 and a 1g.20gb at 6.
    assert allocation["state"] == "scheduled" and allocation["instances"][0]["start"] == 4
    r2 = await client.post(
        base,
        json={"sku": "h100-80gb", "mig_profile": "1g.10gb"},
        headers={**AUTH, "Idempotency-Key": "a1"},
    )
    assert r2.json() == allocation

    bad = await client.post(base, json={"sku": "h100-80gb", "mig_profile": "9g"}, headers=AUTH)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "mig_profile"
    assert (await client.get(base)).status_code == 401

    sync = await client.post(
        f"/v1/gpu/nodes/{node['node_id']}/sync",
        json={"allocations": {allocation["id"]: "running"}},
        headers={"Authorization": f"Bearer {node['credential']}"},
    )
    assert sync.status_code == 200 and sync.json()["allocations"][0]["state"] == "running"
    wrong = await client.post(
        f"/v1/gpu/nodes/{node['node_id']}/sync", json={}, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401

    skus = {s["key"]: s for s in (await client.get("/v1/gpu/skus", headers=AUTH)).json()}
    h100 = {p["name"]: p["available"] for p in skus["h100-80gb"]["profiles"]}
    assert skus["h100-80gb"]["gpus_total"] == 1 and h100["4g.40gb"] == 1 and h100["7g.80gb"] == 0

    r = await client.post(f"{base}/{allocation['id']}/release", headers=AUTH)
    assert r.status_code == 202 and r.json()["state"] == "releasing"
    listed = (await client.get(base, headers=AUTH)).json()["items"]
    assert [a["id"] for a in listed] == [allocation["id"]]
    other = f"/v1/gpu/tenants/{tenant}/projects/{uuid.uuid4()}/allocations/{allocation['id']}"
    assert (await client.get(other, headers=AUTH)).status_code == 404

    nodes = (await client.get("/v1/gpu/nodes", headers=AUTH)).json()
    assert nodes[0]["state"] == "ready" and nodes[0]["gpu_count"] == 1
    types = await _keys_on(infra.kafka, "gpuaas.allocation.v1", allocation["id"], 5)
    assert types == [
        "gpuaas.allocation.requested",
        "gpuaas.allocation.scheduled",
        "gpuaas.allocation.provisioning",
        "gpuaas.allocation.running",
        "gpuaas.allocation.releasing",
    ]
    usage = await _keys_on(infra.kafka, "metering.usage.v1", allocation["id"], 1)
    assert usage == ["metering.usage.recorded"]


async def test_exhausted_balance_releases_and_gates(client, infra, db):
    node = await _register(client, gpus=2)
    tenant, project = await new_project(db)
    base = f"/v1/gpu/tenants/{tenant}/projects/{project}/allocations"
    a = (await client.post(base, json={"sku": "h100-80gb"}, headers=AUTH)).json()
    await client.post(
        f"/v1/gpu/nodes/{node['node_id']}/sync",
        json={"allocations": {a["id"]: "running"}},
        headers={"Authorization": f"Bearer {node['credential']}"},
    )

    payload = BalanceChanged(
        tenant_id=tenant,
        currency="USD",
        available_micros=0,
        standing="exhausted",
        ledger_sequence=7,
        as_of=dt.datetime.now(dt.UTC),
    )
    event = new_event(
        type="billing.balance.exhausted",
        source="billing",
        subject=str(tenant),
        payload=msgspec.json.encode(payload),
        tenant=str(tenant),
    )
    producer = kafka.producer(infra.kafka, "gpuaas-tests")
    await producer.start()
    try:
        await producer.send_and_wait(
            "billing.balance.v1", value=event.data, key=event.key, headers=event.headers()
        )
    finally:
        await producer.stop()

    async def released():
        r = await client.get(f"{base}/{a['id']}", headers=AUTH)
        return r.json()["state"] == "releasing" and r.json()["reason"] == "balance_exhausted"

    assert await _eventually(released)
    gated = await client.post(base, json={"sku": "h100-80gb"}, headers=AUTH)
    assert gated.status_code == 402 and gated.json()["type"].endswith("balance-exhausted")


class _TenantTokens:
    """Stands in for iam's token verifier: token "<tenant>:<project>" is a service account
    of that project with the project role member, as iam mints one (no tenant roles)."""

    async def verify(self, token: str):
        from platformkit.auth import Principal

        tenant, _, project = token.partition(":")
        return Principal(
            subject=str(uuid.uuid4()),
            kind="service_account",
            tenant_id=uuid.UUID(tenant),
            project_ids=frozenset({uuid.UUID(project)}),
            project_roles={uuid.UUID(project): frozenset({"member"})},
        )


async def test_foreign_tenant_and_project_read_as_not_found(http_only, db):
    client = http_only
    client.app.state.token_verifier = _TenantTokens()
    await _register(client)
    tenant, project = await new_project(db)
    mine = {"Authorization": f"Bearer {tenant}:{project}"}
    base = f"/v1/gpu/tenants/{tenant}/projects/{project}/allocations"
    r = await client.post(base, json={"sku": "h100-80gb", "mig_profile": "1g.10gb"}, headers=mine)
    assert r.status_code == 201, r.text
    other_tenant = f"/v1/gpu/tenants/{uuid.uuid4()}/projects/{project}/allocations"
    other_project = f"/v1/gpu/tenants/{tenant}/projects/{uuid.uuid4()}/allocations"
    assert (await client.get(other_tenant, headers=mine)).status_code == 404
    assert (
        await client.post(other_project, json={"sku": "h100-80gb"}, headers=mine)
    ).status_code == 404
    assert (await client.get("/v1/gpu/nodes", headers=mine)).status_code == 403
    assert (await client.get(f"{base}/{r.json()['id']}", headers=mine)).status_code == 200


async def _publish(
    settings: KafkaSettings, topic: str, type_: str, subject: str, payload, tenant
) -> None:
    event = new_event(
        type=type_,
        source="billing",
        subject=subject,
        payload=msgspec.json.encode(payload),
        tenant=str(tenant),
    )
    producer = kafka.producer(settings, "gpuaas-tests")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, value=event.data, key=event.key, headers=event.headers()
        )
    finally:
        await producer.stop()


async def test_minimum_runway_gate(client, infra, db):
    """A tenant override price and a balance (in XTS, the ISO test currency, so the fleet's
    public USD prices on the shared topic do not apply) gate a second GPU: 300 s at 2 GPUs
    x 3.6M micros/h needs 600_000 micros."""
    await _register(client, gpus=4)
    tenant, project = await new_project(db)
    base = f"/v1/gpu/tenants/{tenant}/projects/{project}/allocations"
    now = dt.datetime.now(dt.UTC)
    price = PriceChanged(
        price_id=uuid.uuid4(),
        price_key="gpu:h100-80gb",
        tenant_id=tenant,
        currency="XTS",
        micros_per_hour=3_600_000,
        min_increment_s=1,
        effective_from=now - dt.timedelta(minutes=1),
        version=1,
    )
    await _publish(
        infra.kafka,
        "billing.price.v1",
        "billing.price.changed",
        "gpu:h100-80gb",
        price,
        tenant,
    )

    async def balance(available: int, sequence: int) -> None:
        await _publish(
            infra.kafka,
            "billing.balance.v1",
            "billing.balance.changed",
            str(tenant),
            BalanceChanged(
                tenant_id=tenant,
                currency="XTS",
                available_micros=available,
                standing="ok",
                ledger_sequence=sequence,
                as_of=dt.datetime.now(dt.UTC),
            ),
            tenant,
        )

        async def projected():
            async with db.unit_of_work() as uow:
                return await uow.fetch_one(
                    "SELECT 1 FROM balance_standing b, price_versions p WHERE b.tenant_id = :t"
                    " AND b.ledger_sequence = :s AND p.scope = :t",
                    {"t": tenant, "s": sequence},
                )

        assert await _eventually(projected)

    # Past the funded USD standing new_project put in (ledger sequence 1).
    await balance(400_000, 2)
    first = await client.post(base, json={"sku": "h100-80gb"}, headers=AUTH)
    assert first.status_code == 201, first.text
    refused = await client.post(base, json={"sku": "h100-80gb"}, headers=AUTH)
    assert refused.status_code == 402, refused.text
    problem = refused.json()
    assert problem["type"].endswith("balance-exhausted")
    assert "minimum runway is 300 s" in problem["detail"] and "lasts 200 s" in problem["detail"]
    listed = (await client.get(base, headers=AUTH)).json()["items"]
    assert sorted(a["reason"] or "" for a in listed) == ["", "insufficient_runway"]
    # A key without a price in the tenant's currency is refused: the gate fails closed.
    mig = await client.post(base, json={"sku": "h100-80gb", "mig_profile": "1g.10gb"}, headers=AUTH)
    assert mig.status_code == 409, mig.text
    assert mig.json()["type"].endswith("price-unknown")
    assert "mig:h100-80gb:1g.10gb in XTS" in mig.json()["detail"]

    await balance(600_000, 3)
    allowed = await client.post(base, json={"sku": "h100-80gb"}, headers=AUTH)
    assert allowed.status_code == 201, allowed.text


@pytest.fixture
def long_hold(client, monkeypatch):
    """A hold and fallback poll far longer than any test waits: a held sync can only come
    back early through its node's NOTIFY wakeup."""
    from gpuaas.app import wakeups

    monkeypatch.setattr(wakeups, "FALLBACK_POLL_S", 300.0)
    state = client.app.state
    state.gpuaas_settings = dataclasses.replace(
        state.gpuaas_settings, node_heartbeat_timeout_s=1000.0, node_sync_hold_s=300.0
    )
    return state.node_wakeups


async def _wait_for_hold(wakeups, node_id: str) -> None:
    async def held():
        return node_id in wakeups._waiters

    assert await _eventually(held, within=30)
    assert await _eventually(lambda: _true(wakeups.listening.is_set()), within=30)


def _aside(request) -> asyncio.Task:
    """Litestar's test transport blocks its caller's loop for the whole request: a held one
    runs on a loop of its own in a thread, so that this test can act while it is held."""
    return asyncio.ensure_future(asyncio.to_thread(asyncio.run, request))


async def _true(value: bool) -> bool:
    return value


async def test_held_sync_returns_when_an_allocation_lands_on_its_node(client, long_hold, db):
    node = await _register(client, gpus=1)
    node_auth = {"Authorization": f"Bearer {node['credential']}"}
    sync = f"/v1/gpu/nodes/{node['node_id']}/sync"
    held = _aside(client.post(sync, json={"allocations": {}, "hold": True}, headers=node_auth))
    await _wait_for_hold(long_hold, node["node_id"])
    assert not held.done()
    tenant, project = await new_project(db)
    base = f"/v1/gpu/tenants/{tenant}/projects/{project}/allocations"
    created = await client.post(base, json={"sku": "h100-80gb"}, headers=AUTH)
    assert created.status_code == 201, created.text
    answer = await asyncio.wait_for(held, 120)
    assert answer.status_code == 200, answer.text
    assert [a["id"] for a in answer.json()["allocations"]] == [created.json()["id"]]

    # Desired state differing from the report is answered at once (no hold): the agent
    # reports it running, then a release wakes the next held sync with nothing desired.
    running = {"allocations": {created.json()["id"]: "running"}, "hold": True}
    held = _aside(client.post(sync, json=running, headers=node_auth))
    await _wait_for_hold(long_hold, node["node_id"])
    released = await client.post(f"{base}/{created.json()['id']}/release", headers=AUTH)
    assert released.status_code == 202, released.text
    answer = await asyncio.wait_for(held, 120)
    assert answer.json()["allocations"] == []
    stale = {"allocations": {str(uuid.uuid4()): "running"}, "hold": True}
    at_once = await asyncio.wait_for(client.post(sync, json=stale, headers=node_auth), 120)
    assert at_once.json()["allocations"] == []


async def test_idle_held_sync_returns_after_the_hold_with_nothing_new(client):
    state = client.app.state
    state.gpuaas_settings = dataclasses.replace(state.gpuaas_settings, node_sync_hold_s=0.5)
    node = await _register(client, gpus=1)
    before = dt.datetime.now(dt.UTC)
    answer = await client.post(
        f"/v1/gpu/nodes/{node['node_id']}/sync",
        json={"allocations": {}, "hold": True},
        headers={"Authorization": f"Bearer {node['credential']}"},
    )
    assert answer.status_code == 200 and answer.json()["allocations"] == []
    listed = (await client.get("/v1/gpu/nodes", headers=AUTH)).json()
    (mine,) = [n for n in listed if n["id"] == node["node_id"]]
    # The end of the hold was a heartbeat too: later than the hold's start plus the hold.
    heard = dt.datetime.fromisoformat(mine["last_heartbeat_at"])
    assert heard >= before + dt.timedelta(seconds=0.5)
