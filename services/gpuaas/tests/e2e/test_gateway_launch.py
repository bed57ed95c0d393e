"""End to end on the running fleet, through the gateway: allocate a MIG slice, a simulated
node agent runs it, release it, and the closing usage interval arrives on Kafka."""

import asyncio
import time
import uuid

import httpx
import pytest

from platformkit.kafka import KafkaSettings, consumer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fleet():
    from devstack import credentials, stack
    from devstack.fleet import load
    from devstack.processes import url

    infra, _ = stack.up(log=lambda _msg: None)
    token = credentials.password(credentials.OPERATOR_TOKEN)
    with httpx.Client(
        base_url=url(load().gateway), timeout=15.0, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        yield client, KafkaSettings.from_env(infra.kafka_env())


def _wait_state(client, path, states, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(path).json()
        if body["state"] in states or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


async def _usage_types(kafka: KafkaSettings, key: str) -> list[dict]:
    reader = consumer(
        kafka,
        "metering.usage.v1",
        client_id="e2e-tests",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await reader.start()
    found: list[dict] = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while not found and asyncio.get_running_loop().time() < deadline:
            for records in (await reader.getmany(timeout_ms=500)).values():
                found += [
                    dict(r.headers) | {"value": r.value}
                    for r in records
                    if r.key and r.key.decode() == key
                ]
    finally:
        await reader.stop()
    return found


def _signed_up_project(client) -> str:
    """A tenant and its default project through iam's sign-up, verified by the link mailed
    to devstack's sink (gpuaas answers 404 for a project iam did not make), credited by the
    operator; the allocations path under it."""
    from devstack import mail

    slug = f"launch-{uuid.uuid4().hex[:10]}"
    body = mail.verified_sign_up(
        client,
        {
            "tenant_name": "Launch",
            "slug": slug,
            "email": f"owner@{slug}.example",
            "password": uuid.uuid4().hex + "Aa1!",
        },
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    tenant, project = body["tenant"]["id"], body["project"]["id"]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    deadline = time.monotonic() + 30
    while True:  # an operator credit: 404 until billing has opened the tenant
        paid = client.post(
            f"/v1/billing/tenants/{tenant}/top-ups", json={"amount_micros": 50_000_000}, headers=key
        )
        if paid.status_code == 201 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert paid.status_code == 201, paid.text
    return f"/v1/gpu/tenants/{tenant}/projects/{project}/allocations"


def test_mig_slice_runs_on_a_simulated_node_and_is_metered(fleet):
    client, kafka = fleet
    base = _signed_up_project(client)
    deadline = time.monotonic() + 30
    # 404 until gpuaas has projected the new project from iam's event, 402 until it has seen
    # the credit (a rejection is recorded under its key: a new key each time)
    while True:
        key = {"Idempotency-Key": str(uuid.uuid4())}
        r = client.post(base, json={"sku": "h100-80gb", "mig_profile": "1g.10gb"}, headers=key)
        if r.status_code not in (402, 404) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 201, r.text
    aid = r.json()["id"]
    running = _wait_state(client, f"{base}/{aid}", {"running"})
    assert running["state"] == "running" and running["instances"][0]["memory_slices"] == 1
    assert client.post(f"{base}/{aid}/release").status_code == 202
    assert _wait_state(client, f"{base}/{aid}", {"released"})["state"] == "released"
    usage = asyncio.run(_usage_types(kafka, aid))
    assert usage and usage[-1]["ce_type"] == b"metering.usage.recorded"
    assert b'"final":true' in usage[-1]["value"]
    assert b'"price_key":"mig:h100-80gb:1g.10gb"' in usage[-1]["value"]
