"""The launch gate on real PostgreSQL (and, once, real Kafka): gpuaas projects registry's
release and key events and refuses a launch naming a bundle that is unknown, tampered,
yanked, unsigned, signed by an untrusted, revoked or expired key, below its channel's signer
threshold or not promoted to the project's channel; nothing is recorded for a refusal. A
passing launch carries its bundle to the node; a later yank or revocation is reported on the
running allocation; the agent's refusal of a pulled bundle becomes the failure reason.

The events are registry's documents, signed with real keys. Most tests hand them to the
projection's own handler (what the inbox consumer calls); one sends them through Kafka to
the whole service. Some are forged on purpose (a statement signed by a key the tenant never
trusted): registry would never publish them, and gpuaas must not trust them either."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import json
import time
import uuid

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from gpuaas.app.launch_gate import registry_handler
from gpuaas.bootstrap import DEFINITION
from gpucloud_contracts.events.registry import (
    Blob,
    Bundle,
    KeyChanged,
    PolicyResult,
    ReleaseChanged,
    SignedStatement,
    Signer,
)
from gpucloud_trust import intoto
from gpucloud_trust.digests import digest_bytes
from gpucloud_trust.keys import SigningKey
from platformkit.auth import Principal
from platformkit.envelope import new_event
from platformkit.http import build_service_app
from platformkit.kafka import idempotent_producer
from platformkit.settings import ServiceSettings

pytestmark = pytest.mark.integration
OPERATOR = "gate-operator-token"
NOW = dt.datetime.now(dt.UTC)


class _Tokens:
    """Stands in for iam's verifier: the token is the JSON of the principal's fields."""

    async def verify(self, token: str) -> Principal:
        data = json.loads(token)
        project = data.get("project")
        return Principal(
            subject="user-1",
            kind=data.get("kind", "user"),
            tenant_id=uuid.UUID(data["tenant"]),
            roles=frozenset(data.get("roles", [])),
            project_ids=frozenset({uuid.UUID(project)}) if project else None,
            amr=("pwd", "otp") if data.get("mfa") else ("pwd",),
            auth_time=int(time.time()),
        )


def _token(tenant, *roles, mfa=False, project=None, kind="user") -> dict[str, str]:
    body = {"tenant": str(tenant), "roles": roles, "mfa": mfa, "kind": kind, "project": project}
    return {"Authorization": f"Bearer {json.dumps(body, default=str)}"}


def _settings(infra, url: str) -> ServiceSettings:
    return ServiceSettings(
        service_name=f"gpuaas-test-{uuid.uuid4().hex[:8]}",
        database_url=url,
        kafka=infra.kafka,
        operator_token=OPERATOR,
        heartbeat_interval_s=0,
        outbox_poll_interval_s=0.2,
    )


@pytest.fixture
async def client(infra, gpuaas_url):
    definition = dataclasses.replace(DEFINITION, kafka=False)
    app = build_service_app(definition, _settings(infra, gpuaas_url))
    app.state.token_verifier = _Tokens()
    async with AsyncTestClient(app) as c:
        yield c


@dataclasses.dataclass
class Tenant:
    """One tenant's registry as gpuaas sees it: the events it would receive."""

    tenant: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)
    project: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)
    app: str = dataclasses.field(default_factory=lambda: f"app-{uuid.uuid4().hex[:6]}")

    def key(self, signer: SigningKey, status="active", expires_at=None) -> KeyChanged:
        return KeyChanged(
            tenant_id=self.tenant,
            id=uuid.uuid4(),
            key_id=signer.keyid,
            public_key=base64.b64encode(signer.public.raw).decode(),
            algorithm="ed25519",
            status=status,
            name="ci",
            expires_at=expires_at,
            created_at=NOW,
            occurred_at=dt.datetime.now(dt.UTC),
        )

    def release(
        self,
        version: str,
        *signers: SigningKey,
        channels=("dev", "staging", "stable"),
        yanked=False,
        threshold=1,
        sequence=None,
        digest=None,
        listed=None,
    ) -> ReleaseChanged:
        """`listed`: the keys the event names as the tenant's signers (default: the signers;
        a forged event names a key the tenant never trusted, or none)."""
        digest = digest or digest_bytes(f"{self.app}@{version}".encode())
        statements = []
        if signers:
            envelope = intoto.release_statement(
                digest, tenant=str(self.tenant), app=self.app, version=version
            ).sign(list(signers))
            statements.append(
                SignedStatement(
                    statement_id=uuid.uuid4(),
                    kind="release",
                    predicate_type=intoto.RELEASE,
                    envelope=envelope.to_json().decode(),
                    signer_key_ids=[s.keyid for s in signers],
                )
            )
        blob = Blob(digest=digest_bytes(b"config"), size=6, media_type="application/json")
        last = channels[-1] if channels else None
        return ReleaseChanged(
            tenant_id=self.tenant,
            project_id=self.project,
            app_id=uuid.uuid5(uuid.NAMESPACE_URL, self.app),
            app=self.app,
            version_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{self.tenant}/{self.app}@{version}"),
            version=version,
            bundle=Bundle(
                manifest_digest=digest,
                media_type="application/vnd.oci.image.manifest.v1+json",
                size=100,
                config=blob,
                layers=[blob],
            ),
            statements=statements,
            signers=[
                Signer(key_id=s.keyid, public_key=s.public.to_base64(), status="active")
                for s in (signers if listed is None else listed)
            ],
            channels=[] if yanked else list(channels),
            channel=last,
            policy=PolicyResult(
                channel=last,
                threshold=threshold,
                required_key_ids=[],
                required_evidence=[],
                counted_key_ids=[s.keyid for s in signers],
                evidence_found=[],
                passed=True,
            )
            if last
            else None,
            yanked=yanked,
            sequence=sequence or 1 + len(statements) + len(channels) + int(yanked),
            occurred_at=dt.datetime.now(dt.UTC),
        )

    def launch(self, release: ReleaseChanged | None = None, **bundle) -> dict:
        named = {"app": self.app, "version": "1.0.0", "digest": digest_bytes(b"none")}
        if release is not None:
            named = {
                "app": release.app,
                "version": release.version,
                "digest": release.bundle.manifest_digest,
            }
        return {"sku": "h100-80gb", "mig_profile": "1g.10gb", "bundle": named | bundle}

    @property
    def allocations(self) -> str:
        return f"/v1/gpu/tenants/{self.tenant}/projects/{self.project}/allocations"

    @property
    def owner(self) -> dict[str, str]:
        return _token(self.tenant, "owner", mfa=True)


async def _feed(db, *payloads) -> None:
    """Hand registry events to the projection's handler, as its inbox consumer does."""
    handle = registry_handler()
    for payload in payloads:
        if isinstance(payload, KeyChanged):
            kind, subject = f"registry.key.{payload.status}", str(payload.tenant_id)
        else:
            kind, subject = "registry.release.promoted", str(payload.version_id)
        event = new_event(type=kind, source="registry", subject=subject, payload=payload)
        async with db.unit_of_work() as uow:
            await handle(event, uow)
            await uow.commit()


async def _register(client) -> dict:
    r = await client.post(
        "/v1/gpu/nodes/register",
        json={
            "name": f"n-{uuid.uuid4().hex[:8]}",
            "gpus": [{"index": 0, "sku": "h100-80gb", "device_uuid": f"GPU-{uuid.uuid4()}"}],
        },
        headers={"Authorization": f"Bearer {OPERATOR}"},
    )
    assert r.status_code == 201, r.text
    return r.json()


async def _refusal(client, t: Tenant, body: dict) -> str:
    r = await client.post(t.allocations, json=body, headers=t.owner)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["type"].endswith("/launch-refused") and problem["errors"][0]["field"] == "bundle"
    return problem["errors"][0]["message"]


async def test_each_refusal_names_its_reason_and_records_nothing(client, db):
    await _register(client)
    t = Tenant()
    publisher, cosigner, stranger = (SigningKey.generate() for _ in range(3))
    await _feed(db, t.key(publisher), t.key(cosigner))
    good = t.release("1.0.0", publisher)
    cases: dict[str, tuple[dict, object]] = {
        "unknown-release": (t.launch(), None),
        "manifest-digest": (t.launch(good, digest=digest_bytes(b"a tampered manifest")), good),
        "yanked": (None, t.release("1.0.1", publisher, yanked=True)),
        "unsigned": (None, t.release("1.0.2", channels=())),
        "untrusted": (None, t.release("1.0.3", stranger, listed=())),
        "below-threshold": (None, t.release("1.0.4", publisher, threshold=2)),
        "unpromoted": (None, t.release("1.0.5", publisher, channels=("dev", "staging"))),
    }
    for reason, (body, release) in cases.items():
        if release is not None:
            await _feed(db, release)
        assert await _refusal(client, t, body or t.launch(release)) == reason, reason

    # another project of the tenant cannot launch this project's app
    elsewhere = dataclasses.replace(t, project=uuid.uuid4())
    assert await _refusal(client, elsewhere, t.launch(good)) == "unknown-release"
    # revoked and expired keys count for nothing, past signatures included
    revoked = SigningKey.generate()
    await _feed(db, t.key(revoked), by_revoked := t.release("1.1.0", revoked))
    await _feed(db, t.key(revoked, "revoked"))
    assert await _refusal(client, t, t.launch(by_revoked)) == "revoked"
    expiring = SigningKey.generate()
    await _feed(db, t.key(expiring), by_expiring := t.release("1.2.0", expiring))
    await _feed(db, t.key(expiring, expires_at=dt.datetime.now(dt.UTC)))
    assert await _refusal(client, t, t.launch(by_expiring)) == "expired"
    # a late, older event of the revoked key never makes it active again
    late = msgspec.structs.replace(t.key(revoked), occurred_at=NOW - dt.timedelta(days=1))
    await _feed(db, late)
    assert await _refusal(client, t, t.launch(by_revoked)) == "revoked"

    listed = await client.get(t.allocations, headers=t.owner)
    assert listed.json()["items"] == []  # a refusal records nothing


async def test_a_passing_bundle_reaches_the_node_and_later_changes_are_reported(client, db):
    node = await _register(client)
    node_auth = {"Authorization": f"Bearer {node['credential']}"}
    t = Tenant()
    publisher = SigningKey.generate()
    release = t.release("2.0.0", publisher)
    await _feed(db, t.key(publisher), release)
    launched = await client.post(t.allocations, json=t.launch(release), headers=t.owner)
    assert launched.status_code == 201, launched.text
    allocation = launched.json()
    assert allocation["bundle"] == {
        "tenant_id": str(t.tenant),
        "app": t.app,
        "version": "2.0.0",
        "digest": release.bundle.manifest_digest,
        "channel": "stable",
        "withdrawn": None,
    }
    sync = await client.post(
        f"/v1/gpu/nodes/{node['node_id']}/sync", json={"allocations": {}}, headers=node_auth
    )
    desired = sync.json()["allocations"][0]
    assert desired["bundle"]["project_id"] == str(t.project)
    assert desired["bundle"]["digest"] == release.bundle.manifest_digest

    # yanked after the launch: the running allocation is reported, not stopped
    await _feed(db, t.release("2.0.0", publisher, yanked=True))
    again = await client.get(f"{t.allocations}/{allocation['id']}", headers=t.owner)
    assert again.json()["bundle"]["withdrawn"] == "yanked"
    assert again.json()["state"] == "scheduled"

    # the agent refused what it pulled: the allocation fails with the agent's reason
    second = t.release("2.1.0", publisher)
    await _feed(db, second)
    other = (await client.post(t.allocations, json=t.launch(second), headers=t.owner)).json()
    observed = {"allocations": {other["id"]: "failed"}, "failures": {other["id"]: "blob-digest"}}
    await client.post(f"/v1/gpu/nodes/{node['node_id']}/sync", json=observed, headers=node_auth)
    failed = (await client.get(f"{t.allocations}/{other['id']}", headers=t.owner)).json()
    assert failed["state"] == "releasing" and failed["reason"] == "bundle_blob_digest"
    # a code the node made up is recorded as a plain provision error
    third = (await client.post(t.allocations, json=t.launch(second), headers=t.owner)).json()
    made_up = {"allocations": {third["id"]: "failed"}, "failures": {third["id"]: "free text"}}
    await client.post(f"/v1/gpu/nodes/{node['node_id']}/sync", json=made_up, headers=node_auth)
    third = (await client.get(f"{t.allocations}/{third['id']}", headers=t.owner)).json()
    assert third["reason"] == "provision_error"


async def test_the_launch_policy_sets_the_channel_and_may_require_a_bundle(client, db):
    await _register(client)
    t = Tenant()
    publisher = SigningKey.generate()
    dev_only = t.release("3.0.0", publisher, channels=("dev",))
    await _feed(db, t.key(publisher), dev_only)
    policy = f"/v1/gpu/tenants/{t.tenant}/projects/{t.project}/launch-policy"
    default = await client.get(policy, headers=t.owner)
    assert default.json() == {
        "tenant_id": str(t.tenant),
        "project_id": str(t.project),
        "required_channel": "stable",
        "require_bundle": False,
        "configured": False,
    }
    assert await _refusal(client, t, t.launch(dev_only)) == "unpromoted"
    plain = {"sku": "h100-80gb", "mig_profile": "1g.10gb"}
    assert (await client.post(t.allocations, json=plain, headers=t.owner)).status_code == 201

    changed = await client.put(
        policy, json={"required_channel": "dev", "require_bundle": True}, headers=t.owner
    )
    assert changed.status_code == 200 and changed.json()["configured"] is True
    launched = await client.post(t.allocations, json=t.launch(dev_only), headers=t.owner)
    assert launched.status_code == 201, launched.text
    assert launched.json()["bundle"]["channel"] == "dev"
    assert await _refusal(client, t, plain) == "bundle-required"

    refusals = {
        "no token": ({}, 401),
        "another tenant": (_token(uuid.uuid4(), "owner", mfa=True), 404),
        "another project's service account": (
            _token(t.tenant, "admin", project=uuid.uuid4(), kind="service_account"),
            404,
        ),
        "a member": (_token(t.tenant, "member", mfa=True), 403),
        "an owner without a recent second factor": (_token(t.tenant, "owner"), 401),
        "this project's service account": (
            _token(t.tenant, "admin", project=t.project, kind="service_account"),
            403,
        ),
    }
    body = {"required_channel": "stable"}
    for who, (headers, status) in refusals.items():
        r = await client.put(policy, json=body, headers=headers)
        assert r.status_code == status, (who, r.status_code, r.text)
    assert (await client.get(policy, headers={})).status_code == 401
    assert (await client.get(policy, headers=refusals["another tenant"][0])).status_code == 404
    # a project whose policy another tenant set stays that tenant's
    intruder = _token(uuid.uuid4(), "owner", mfa=True)
    hijack = policy.replace(str(t.tenant), json.loads(intruder["Authorization"][7:])["tenant"])
    assert (await client.put(hijack, json=body, headers=intruder)).status_code == 404
    unchanged = await client.get(policy, headers=t.owner)
    assert unchanged.json()["required_channel"] == "dev"


async def test_the_projection_is_fed_from_kafka(infra, gpuaas_url, db):
    """The whole service with its consumers: registry's events arrive through Kafka (with
    registry's CloudEvents source) and the gate opens once the projection has them."""
    app = build_service_app(DEFINITION, _settings(infra, gpuaas_url))
    app.state.token_verifier = _Tokens()
    t = Tenant()
    publisher = SigningKey.generate()
    release = t.release("4.0.0", publisher)
    producer = idempotent_producer(infra.kafka, "gpuaas-tests")
    async with AsyncTestClient(app) as client:
        await _register(client)
        await producer.start()
        try:
            for topic, kind, subject, payload in (
                ("registry.key.v1", "registry.key.added", t.tenant, t.key(publisher)),
                ("registry.release.v1", "registry.release.promoted", release.version_id, release),
            ):
                event = new_event(
                    type=kind,
                    source="registry",
                    subject=str(subject),
                    payload=msgspec.json.encode(payload),
                    tenant=str(t.tenant),
                )
                await producer.send_and_wait(
                    topic, value=event.data, key=event.key, headers=event.headers()
                )
        finally:
            await producer.stop()
        deadline = time.monotonic() + 30
        while True:
            r = await client.post(t.allocations, json=t.launch(release), headers=t.owner)
            if r.status_code == 201 or time.monotonic() > deadline:
                break
            assert r.json()["errors"][0]["message"] == "unknown-release", r.text
            await asyncio.sleep(0.2)
        assert r.status_code == 201, r.text
