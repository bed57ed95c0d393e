"""gpuaas's launch-gate projection of registry's events through real Kafka: a release event
and a key event, each delivered twice, land once (the kit's inbox); an older release event
arriving after a newer one changes nothing; a revocation is never undone by a late event;
and the gate then decides from the rows (signed and promoted: allowed; revoked: refused)."""

import asyncio
import dataclasses
import datetime as dt
import uuid

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from gpuaas.app.errors import LaunchRefusedProblem
from gpuaas.app.launch_gate import check
from gpuaas.bootstrap import DEFINITION
from gpuaas.domain.launch_gate import BundleRequest
from gpucloud_contracts.events.registry import (
    Blob,
    Bundle,
    KeyChanged,
    ReleaseChanged,
    SignedStatement,
    Signer,
)
from gpucloud_trust import intoto
from gpucloud_trust.digests import digest_bytes
from gpucloud_trust.keys import SigningKey
from platformkit import kafka
from platformkit.envelope import new_event
from platformkit.http import build_service_app
from platformkit.settings import ServiceSettings

pytestmark = pytest.mark.integration


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
        subscriptions=[s for s in DEFINITION.subscriptions if s.consumer == "launch-gate"],
    )
    async with AsyncTestClient(build_service_app(definition, settings)) as c:
        yield c


async def _send(infra, topic: str, *events) -> None:
    producer = kafka.producer(infra.kafka, "gpuaas-tests")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                topic, value=event.data, key=event.key, headers=event.headers()
            )
    finally:
        await producer.stop()


async def _eventually(check_, within=60.0):
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check_()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.3)


def _event(type_, subject, payload, tenant):
    return new_event(
        type=type_, source="registry", subject=str(subject),
        payload=msgspec.json.encode(payload), tenant=str(tenant),
    )  # fmt: skip


def _release(tenant, project, version_id, signer, digest, sequence, channels, status="active"):
    now = dt.datetime.now(dt.UTC)
    envelope = intoto.release_statement(digest, tenant=str(tenant), app="llm", version="1.0.0")
    blob = Blob(digest=digest_bytes(b"layer"), size=5, media_type="application/octet-stream")
    return ReleaseChanged(
        tenant_id=tenant, project_id=project, app_id=uuid.uuid4(), app="llm",
        version_id=version_id, version="1.0.0",
        bundle=Bundle(manifest_digest=digest, media_type="m", size=10, config=blob, layers=[blob]),
        statements=[SignedStatement(
            statement_id=uuid.uuid4(), kind="release", predicate_type=intoto.RELEASE,
            envelope=envelope.sign([signer]).to_json().decode(), signer_key_ids=[signer.keyid],
        )],
        signers=[Signer(key_id=signer.keyid, public_key=signer.public.to_base64(), status=status)],
        channels=channels, yanked=False, sequence=sequence, occurred_at=now,
    )  # fmt: skip


async def test_release_and_key_events_land_once_and_feed_the_gate(client, infra, db):
    tenant, project, version_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    signer = SigningKey.generate()
    digest = digest_bytes(b"manifest " + tenant.bytes)
    promoted = _event(
        "registry.release.promoted", version_id,
        _release(tenant, project, version_id, signer, digest, 4, ["dev", "staging", "stable"]),
        tenant,
    )  # fmt: skip
    older = _event(
        "registry.release.promoted", version_id,
        _release(tenant, project, version_id, signer, digest, 2, ["dev"]), tenant,
    )  # fmt: skip
    await _send(infra, "registry.release.v1", promoted, promoted, older)  # redelivered, late

    async def claimed(event):
        async with db.unit_of_work() as uow:
            return await uow.fetch_one(
                "SELECT 1 FROM inbox WHERE consumer = 'launch-gate' AND event_id = :e",
                {"e": event.id},
            )

    assert await _eventually(lambda: claimed(older))
    async with db.unit_of_work() as uow:
        rows = await uow.fetch_all(
            "SELECT channels, sequence, envelopes FROM releases WHERE version_id = :v",
            {"v": version_id},
        )
        claims = await uow.fetch_all(
            "SELECT 1 FROM inbox WHERE consumer = 'launch-gate' AND event_id = :e",
            {"e": promoted.id},
        )
    assert len(rows) == 1 and len(claims) == 1
    assert rows[0]["channels"] == ["dev", "staging", "stable"] and rows[0]["sequence"] == 4
    request = BundleRequest("llm", "1.0.0", digest)
    async with db.unit_of_work() as uow:
        launched = await check(uow, tenant, project, request, dt.datetime.now(dt.UTC))
    assert launched.digest == digest and launched.channel == "stable"

    now = dt.datetime.now(dt.UTC)
    key = KeyChanged(
        tenant_id=tenant, id=uuid.uuid4(), key_id=signer.keyid,
        public_key=signer.public.to_base64(), algorithm="ed25519", status="revoked",
        name="release", created_at=now, occurred_at=now, revoked_at=now,
    )  # fmt: skip
    revoked = _event("registry.key.revoked", tenant, key, tenant)
    reactivated = msgspec.structs.replace(key, status="active", revoked_at=None)
    late_active = _event("registry.key.added", tenant, reactivated, tenant)
    await _send(infra, "registry.key.v1", revoked, revoked, late_active)
    assert await _eventually(lambda: claimed(late_active))
    async with db.unit_of_work() as uow:
        keys = await uow.fetch_all(
            "SELECT status FROM publisher_keys WHERE tenant_id = :t", {"t": tenant}
        )
    assert [k["status"] for k in keys] == ["revoked"]
    async with db.unit_of_work() as uow:
        with pytest.raises(LaunchRefusedProblem) as refused:
            await check(uow, tenant, project, request, dt.datetime.now(dt.UTC))
    assert refused.value.reason == "revoked"
    assert refused.value.to_problem().type.endswith("/bundle-revoked")
