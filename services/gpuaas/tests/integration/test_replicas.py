"""appplatform's replica commands through real Kafka and PostgreSQL: gpuaas's `replicas`
subscription makes one allocation per replica id however often the command is sent or
delivered, with the runtime and the replica on the allocation and on every event; a command
for an invented project, another tenant's project or an unpromoted bundle is rejected
(`gpuaas.allocation.rejected` naming the replica); a stop releases; a record from a source
other than appplatform is never applied."""

import asyncio
import dataclasses
import datetime as dt
import uuid

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from gpuaas.app.launch_gate import registry_handler
from gpuaas.app.projects import tenant_handler
from gpuaas.app.replicas import request_replica, unrecorded_id
from gpuaas.bootstrap import DEFINITION
from gpuaas.settings import GpuaasSettings
from gpucloud_contracts.events.appplatform import (
    BundleRef,
    Port,
    Probe,
    ReplicaRequest,
    ReplicaResources,
    ReplicaStop,
    Runtime,
)
from gpucloud_contracts.events.iam import TenantSuspended
from gpucloud_contracts.events.registry import Blob, Bundle, ReleaseChanged, SignedStatement, Signer
from gpucloud_trust import intoto
from gpucloud_trust.digests import digest_bytes
from gpucloud_trust.keys import SigningKey
from platformkit import kafka
from platformkit.envelope import new_event
from platformkit.http import build_service_app
from platformkit.settings import ServiceSettings

from .conftest import add_node, iam_event, new_project, outbox

pytestmark = pytest.mark.integration
TOPIC = "appplatform.replica.v1"
SETTINGS = GpuaasSettings(metering_period_s=60)


@pytest.fixture
async def client(infra, gpuaas_url):
    settings = ServiceSettings(
        service_name=f"gpuaas-test-{uuid.uuid4().hex[:8]}",
        database_url=gpuaas_url,
        kafka=infra.kafka,
        operator_token="test-operator-token",
        heartbeat_interval_s=0,
        outbox_poll_interval_s=0.2,
    )
    definition = dataclasses.replace(
        DEFINITION,
        subscriptions=[s for s in DEFINITION.subscriptions if s.consumer == "replicas"],
        jobs=[],
    )
    async with AsyncTestClient(build_service_app(definition, settings)) as c:
        yield c


async def _send(infra, *events) -> None:
    producer = kafka.producer(infra.kafka, "gpuaas-tests")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                TOPIC, value=event.data, key=event.key, headers=event.headers()
            )
    finally:
        await producer.stop()


async def _eventually(check, within=60.0):
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.3)


async def _applied(db, event) -> bool:
    async with db.unit_of_work() as uow:
        return bool(
            await uow.fetch_one(
                "SELECT 1 FROM inbox WHERE consumer = 'replicas' AND event_id = :e",
                {"e": event.id},
            )
        )


def _event(type_, instance, payload, tenant, source="appplatform"):
    return new_event(
        type=type_, source=source, subject=str(instance),
        payload=msgspec.json.encode(payload), tenant=str(tenant),
    )  # fmt: skip


async def _launchable(
    db, tenant, project, channels=("dev", "staging", "stable"), version="1.0.0"
) -> str:
    """A signed release `web` `version` of the project, promoted to `channels`, as gpuaas's
    launch-gate projection holds it (its own handler)."""
    signer = SigningKey.generate()
    digest = digest_bytes(b"manifest " + project.bytes + repr(channels).encode())
    envelope = intoto.release_statement(digest, tenant=str(tenant), app="web", version=version)
    blob = Blob(digest=digest_bytes(b"layer"), size=5, media_type="application/octet-stream")
    release = ReleaseChanged(
        tenant_id=tenant, project_id=project, app_id=uuid.uuid4(), app="web",
        version_id=uuid.uuid4(), version=version,
        bundle=Bundle(manifest_digest=digest, media_type="m", size=10, config=blob, layers=[blob]),
        statements=[SignedStatement(
            statement_id=uuid.uuid4(), kind="release", predicate_type=intoto.RELEASE,
            envelope=envelope.sign([signer]).to_json().decode(), signer_key_ids=[signer.keyid],
        )],
        signers=[Signer(key_id=signer.keyid, public_key=signer.public.to_base64(),
                        status="active")],
        channels=list(channels), yanked=False, sequence=3, occurred_at=dt.datetime.now(dt.UTC),
    )  # fmt: skip
    event = new_event(
        type="registry.release.promoted", source="registry", subject=str(release.version_id),
        payload=msgspec.json.encode(release), tenant=str(tenant),
    )  # fmt: skip
    async with db.unit_of_work() as uow:
        await registry_handler()(event, uow)
        await uow.commit()
    return digest


RUNTIME = Runtime(
    command=["python", "-m", "http.server", "${PORT}"],
    env={"MODE": "test"},
    ports=[Port(name="http", port=8080, protocol="http", expose=True)],
    probe=Probe(
        port=8080, path="/", interval_s=0.5, timeout_s=1, initial_delay_s=0, failure_threshold=3
    ),
)


def _request(tenant, project, digest, bundle_tenant=None, version="1.0.0"):
    return ReplicaRequest(
        replica_id=uuid.uuid4(), instance_id=uuid.uuid4(),
        tenant_id=tenant, project_id=project, generation=1,
        bundle=BundleRef(tenant_id=bundle_tenant or tenant, app="web", version=version,
                         manifest_digest=digest),
        resources=ReplicaResources(sku="h100-80gb", mig_profile="1g.10gb", count=1),
        runtime=RUNTIME, occurred_at=dt.datetime.now(dt.UTC),
    )  # fmt: skip


async def _allocations_of(db, replica):
    async with db.unit_of_work() as uow:
        return await uow.fetch_all(
            "SELECT id, state, reason, instance_id, runtime FROM allocations WHERE replica_id = :r",
            {"r": replica},
        )


async def test_a_replica_sent_and_delivered_twice_makes_one_allocation_and_stop_releases(
    client, infra, db
):
    await add_node(db)
    tenant, project = await new_project(db)
    digest = await _launchable(db, tenant, project)
    r = _request(tenant, project, digest)
    first = _event("appplatform.replica.requested", r.instance_id, r, tenant)
    # the controller sent the same replica again (a new event id), and Kafka redelivered
    again = _event("appplatform.replica.requested", r.instance_id, r, tenant)
    await _send(infra, first, first, again)
    assert await _eventually(lambda: _applied(db, again))

    rows = await _allocations_of(db, r.replica_id)
    assert len(rows) == 1
    row = rows[0]
    assert row["state"] == "scheduled" and row["instance_id"] == r.instance_id
    assert row["runtime"] == msgspec.to_builtins(RUNTIME)
    events = await outbox(db, row["id"], "gpuaas.allocation.v1")
    assert [e["type"] for e in events] == [
        "gpuaas.allocation.requested",
        "gpuaas.allocation.scheduled",
    ]
    for e in events:
        payload = e["payload"]
        payload = msgspec.json.decode(payload) if isinstance(payload, str | bytes) else payload
        assert payload["replica"] == {
            "replica_id": str(r.replica_id),
            "instance_id": str(r.instance_id),
        }
        assert payload["bundle"]["manifest_digest"] == digest

    stop = ReplicaStop(
        replica_id=r.replica_id, instance_id=r.instance_id, tenant_id=tenant,
        project_id=project, reason="user_stop", occurred_at=dt.datetime.now(dt.UTC),
    )  # fmt: skip
    unknown = msgspec.structs.replace(stop, replica_id=uuid.uuid4())
    stopped = _event("appplatform.replica.stop_requested", r.instance_id, stop, tenant)
    stopped_again = _event("appplatform.replica.stop_requested", r.instance_id, stop, tenant)
    never_made = _event("appplatform.replica.stop_requested", r.instance_id, unknown, tenant)
    await _send(infra, stopped, stopped_again, never_made)
    assert await _eventually(lambda: _applied(db, never_made))
    (row,) = await _allocations_of(db, r.replica_id)
    assert row["state"] == "releasing" and row["reason"] == "user_stop"
    types = [e["type"] for e in await outbox(db, row["id"], "gpuaas.allocation.v1")]
    assert types.count("gpuaas.allocation.releasing") == 1


async def test_invented_foreign_suspended_and_unpromoted_are_rejected_naming_the_replica(
    client, infra, db
):
    await add_node(db)
    tenant, project = await new_project(db)
    other_tenant, other_project = await new_project(db)
    digest = await _launchable(db, tenant, project)
    unpromoted = await _launchable(db, tenant, project, channels=("dev",), version="2.0.0")
    suspended_tenant, suspended_project = await new_project(db)
    suspended_digest = await _launchable(db, suspended_tenant, suspended_project)
    async with db.unit_of_work() as uow:
        await tenant_handler()(
            iam_event(
                "iam.tenant.suspended", suspended_tenant,
                TenantSuspended(tenant_id=suspended_tenant, reason="test",
                                suspended_at=dt.datetime.now(dt.UTC)),
                suspended_tenant,
            ),
            uow,
        )  # fmt: skip
        await uow.commit()
    cases = [
        ("unknown_project", _request(tenant, uuid.uuid4(), digest)),
        # the other tenant's project, named under this tenant
        ("unknown_project", _request(tenant, other_project, digest)),
        # this tenant's app launched into the other tenant's project: not its release
        ("bundle_unknown_release", _request(other_tenant, other_project, digest, tenant)),
        ("bundle_unpromoted", _request(tenant, project, unpromoted, version="2.0.0")),
        ("tenant_suspended", _request(suspended_tenant, suspended_project, suspended_digest)),
    ]
    events = [
        _event("appplatform.replica.requested", r.instance_id, r, r.tenant_id) for _, r in cases
    ]
    await _send(infra, *events)
    for event in events:
        assert await _eventually(lambda event=event: _applied(db, event))
    # resources no SKU matches: nothing can be recorded, the rejection is still published
    bogus = msgspec.structs.replace(
        _request(tenant, project, digest), resources=ReplicaResources(sku="v100", count=1)
    )
    bogus_event = _event("appplatform.replica.requested", bogus.instance_id, bogus, tenant)
    await _send(infra, bogus_event)
    assert await _eventually(lambda: _applied(db, bogus_event))
    assert await _allocations_of(db, bogus.replica_id) == []
    published = await outbox(db, unrecorded_id(bogus.replica_id), "gpuaas.allocation.v1")
    assert [e["type"] for e in published] == [
        "gpuaas.allocation.requested",
        "gpuaas.allocation.rejected",
    ]
    assert _json(published[1]["payload"])["reason"] == "invalid_resources"
    assert _json(published[1]["payload"])["replica"]["replica_id"] == str(bogus.replica_id)

    for reason, r in cases:
        (row,) = await _allocations_of(db, r.replica_id)
        assert (row["state"], row["reason"]) == ("rejected", reason)
        rejected = [
            e for e in await outbox(db, row["id"], "gpuaas.allocation.v1")
            if e["type"] == "gpuaas.allocation.rejected"
        ]  # fmt: skip
        assert len(rejected) == 1
        payload = rejected[0]["payload"]
        payload = msgspec.json.decode(payload) if isinstance(payload, str | bytes) else payload
        assert payload["replica"]["replica_id"] == str(r.replica_id)
        assert payload["reason"] == reason


async def test_a_replica_command_from_another_source_is_not_applied(client, infra, db):
    await add_node(db)
    tenant, project = await new_project(db)
    digest = await _launchable(db, tenant, project)
    forged = _request(tenant, project, digest)
    marker = _request(tenant, project, digest)
    await _send(
        infra,
        _event("appplatform.replica.requested", forged.instance_id, forged, tenant, "billing"),
        _event("appplatform.replica.requested", forged.instance_id, marker, tenant),
    )
    assert await _eventually(lambda: _allocations_of(db, marker.replica_id))
    assert await _allocations_of(db, forged.replica_id) == []


async def test_the_runtime_goes_to_the_node_and_readiness_changes_are_published_once(
    client, infra, db
):
    node = await add_node(db)
    tenant, project = await new_project(db)
    digest = await _launchable(db, tenant, project)
    r = _request(tenant, project, digest)
    async with db.unit_of_work() as uow:
        a = await request_replica(uow, r, SETTINGS, {})
        await uow.commit()
    assert a is not None and a.state == "scheduled"
    aid = str(a.id)
    sync = f"/v1/gpu/nodes/{node.node_id}/sync"
    auth = {"Authorization": f"Bearer {node.credential}"}

    async def report(**fields):
        reply = await client.post(sync, json={"allocations": {aid: "running"}, **fields},
                                  headers=auth)  # fmt: skip
        assert reply.status_code == 200, reply.text
        return reply.json()

    desired = await report()
    (mine,) = [d for d in desired["allocations"] if d["id"] == aid]
    assert mine["runtime"]["command"] == ["python", "-m", "http.server", "${PORT}"]
    assert mine["runtime"]["ports"][0] == {
        "name": "http", "port": 8080, "protocol": "http", "expose": True,
    }  # fmt: skip
    assert mine["runtime"]["probe"]["path"] == "/" and mine["runtime"]["env"] == {"MODE": "test"}
    await report()  # provisioning -> running

    await report(readiness={aid: "starting"})
    await report(readiness={aid: "ready"})
    await report(readiness={aid: "ready"})  # unchanged: nothing new
    await report(readiness={aid: "unready"}, readiness_reasons={aid: "process_exited"})
    await report(readiness={aid: "unready"}, readiness_reasons={aid: "process_exited"})
    await report(readiness={aid: "ready"})
    events = await outbox(db, a.id, "gpuaas.allocation.v1")
    readiness = [
        (e["type"].rsplit(".", 1)[1], _json(e["payload"]).get("reason"))
        for e in events
        if "workload" in e["type"]
    ]
    assert readiness == [
        ("workload_ready", None),
        ("workload_unready", "process_exited"),
        ("workload_ready", None),
    ]
    for e in events:
        payload = _json(e["payload"])
        assert payload["replica"]["replica_id"] == str(r.replica_id)
        if "workload" in e["type"]:
            assert payload["state"] == payload["previous_state"] == "running"
    view = (await client.get(
        f"/v1/gpu/tenants/{tenant}/projects/{project}/allocations/{aid}",
        headers={"Authorization": "Bearer test-operator-token"},
    )).json()  # fmt: skip
    assert (view["state"], view["readiness"]) == ("running", "ready")
    assert view["replica_id"] == str(r.replica_id)


def _json(payload):
    return msgspec.json.decode(payload) if isinstance(payload, str | bytes) else payload
