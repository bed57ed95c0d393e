"""Publish, sign, promote dev -> staging -> stable on real PostgreSQL and the real OCI
registry; the refusals (skipped channel, missing signature, revoked key, below threshold,
missing evidence, untrusted signer, tampered bytes); the events carry what a launch gate
needs to verify the pulled bundle offline."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec
import psycopg
import pytest

from gpucloud_contracts.events.audit import EvidenceRecorded
from gpucloud_contracts.events.registry import KeyChanged, ReleaseChanged
from gpucloud_trust import bundle as bundles
from gpucloud_trust.digests import digest_bytes
from gpucloud_trust.dsse import Envelope
from gpucloud_trust.keys import PublicKey, SigningKey
from platformkit.envelope import new_event
from registry.app.evidence import evidence_handler
from registry.domain.apps import repository

from .conftest import build_bundle
from .helpers import Publisher, key

pytestmark = pytest.mark.integration


def _reasons(response) -> list[str]:
    return [e["message"] for e in response.json().get("errors", [])]


def _outbox(url: str) -> list[tuple[str, str, bytes]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT type, topic, payload FROM outbox ORDER BY seq").fetchall()
    return [(t, topic, bytes(p)) for t, topic, p in rows]


async def test_publish_sign_and_promote_through_every_channel(client, registry_url, oci, tmp_path):
    p = Publisher(client)
    alice, bob = SigningKey.generate(), SigningKey.generate()
    await p.create_app()
    built = build_bundle(tmp_path)
    await p.upload(built)
    published = await p.publish("1.4.0-rc.1", built)
    assert published["bundle"]["manifest_digest"] == built.digest
    assert published["channels"] == [] and published["sequence"] == 1
    await p.trust(alice, "alice")
    await p.trust(bob, "bob")
    await p.set_policy("staging", required_evidence=["uat", "security-scan"])
    await p.set_policy("stable", threshold=2, required_key_ids=[alice.keyid, bob.keyid])

    await p.attach("1.4.0-rc.1", p.release(built.digest, "1.4.0-rc.1", alice))
    assert (await p.promote("1.4.0-rc.1", "dev")).status_code == 201

    refused = await p.promote("1.4.0-rc.1", "staging")
    assert refused.status_code == 422 and _reasons(refused) == ["missing-evidence"]
    for kind in ("uat", "security-scan"):
        await p.attach("1.4.0-rc.1", p.evidence(built.digest, kind, bob))
    assert (await p.promote("1.4.0-rc.1", "staging")).status_code == 201

    refused = await p.promote("1.4.0-rc.1", "stable")
    assert refused.status_code == 422 and _reasons(refused) == ["below-threshold"]
    await p.attach("1.4.0-rc.1", p.release(built.digest, "1.4.0-rc.1", bob))
    stable = await p.promote("1.4.0-rc.1", "stable")
    assert stable.status_code == 201, stable.text
    release = msgspec.convert(stable.json(), ReleaseChanged)
    # 1 + four statements + three promotions
    assert release.channels == ["dev", "staging", "stable"] and release.sequence == 8
    assert sorted(release.policy.counted_key_ids) == sorted([alice.keyid, bob.keyid])

    # the outbox carries every change, in order, with the whole release document
    events = [(t, topic) for t, topic, _ in _outbox(registry_url)]
    assert [t for t, topic in events if topic == "registry.release.v1"] == [
        "registry.version.published",
        *["registry.statement.attached", "registry.release.promoted"],
        *["registry.statement.attached"] * 2,
        "registry.release.promoted",
        *["registry.statement.attached", "registry.release.promoted"],
    ]
    assert [t for t, topic in events if topic == "registry.key.v1"] == ["registry.key.added"] * 2
    promoted = msgspec.json.decode(_outbox(registry_url)[-1][2], type=ReleaseChanged)

    # the gate rule, from the event alone: the public keys it carries verify the release, and
    # the bytes pulled back from the OCI registry verify against its manifest digest
    trusted = [
        PublicKey.from_base64(s.public_key) for s in promoted.signers if s.status != "revoked"
    ]
    envelopes = [Envelope.from_json(s.envelope) for s in promoted.statements if s.kind == "release"]
    claim = bundles.ReleaseClaim(str(p.tenant), p.app, "1.4.0-rc.1")
    pulled = tmp_path / "pulled"
    (pulled / "blobs" / "sha256").mkdir(parents=True)
    for blob in [promoted.bundle.config, *promoted.bundle.layers]:
        got = await client.get(f"{p.base}/{p.app}/blobs/{blob.digest}", headers=p.owner)
        assert got.status_code == 200
        bundles.blob_path(pulled, blob.digest).write_bytes(got.content)
    manifest = await oci.get_manifest(
        repository(p.tenant, p.app), built.digest, bundles.MANIFEST_MEDIA_TYPE
    )
    assert manifest == built.manifest.raw
    bundles.blob_path(pulled, built.digest).write_bytes(manifest)
    verified = bundles.verify_layout(
        pulled, envelopes, trusted, manifest_digest=built.digest, threshold=2, claim=claim
    )
    assert set(verified.signer_keyids) == {alice.keyid, bob.keyid}

    listed = (await client.get(f"{p.base}/{p.app}/versions", headers=p.owner)).json()["items"]
    assert listed[0]["channels"] == ["dev", "staging", "stable"]


async def test_promotion_refusals(client, tmp_path):
    p = Publisher(client)
    signer, stranger = SigningKey.generate(), SigningKey.generate()
    await p.create_app()
    built = build_bundle(tmp_path)
    await p.upload(built)
    await p.publish("2.0.0", built)
    trusted_key = await p.trust(signer)

    unsigned = await p.promote("2.0.0", "dev")
    assert unsigned.status_code == 422 and _reasons(unsigned) == ["unsigned"]
    # a statement signed by a key the tenant does not trust is not even attached
    untrusted = await p.attach("2.0.0", p.release(built.digest, "2.0.0", stranger), expect=422)
    assert [e["message"] for e in untrusted["errors"]] == ["untrusted-signer"]
    # nor a release statement about another version, or about other bytes
    other_version = await p.attach("2.0.0", p.release(built.digest, "2.0.1", signer), expect=422)
    assert other_version["errors"][0]["message"] == "claim-mismatch"
    other_bytes = p.release(digest_bytes(b"tampered manifest"), "2.0.0", signer)
    assert (await p.attach("2.0.0", other_bytes, expect=422))["errors"][0]["message"] == (
        "subject-mismatch"
    )

    await p.attach("2.0.0", p.release(built.digest, "2.0.0", signer))
    skipped = await p.promote("2.0.0", "staging")
    assert (
        skipped.status_code == 409 and skipped.json()["errors"][0]["message"] == "skipped-channel"
    )

    await p.set_policy("dev", threshold=2)
    below = await p.promote("2.0.0", "dev")
    assert below.status_code == 422 and _reasons(below) == ["below-threshold"]
    await p.set_policy("dev", threshold=1)

    revoked = await client.post(
        f"/v1/registry/tenants/{p.tenant}/keys/{trusted_key['id']}/revoke",
        json={"reason": "laptop stolen"},
        headers=p.owner,
    )
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    after_revocation = await p.promote("2.0.0", "dev")
    assert after_revocation.status_code == 422 and _reasons(after_revocation) == ["unsigned"]
    # a revoked key is never trusted again
    again = await client.post(
        f"/v1/registry/tenants/{p.tenant}/keys",
        json={"public_key": signer.public.to_base64(), "name": "again"},
        headers=p.owner,
    )
    assert again.status_code == 409

    document = (await client.get(p.version_path("2.0.0"), headers=p.owner)).json()
    assert [s["status"] for s in document["signers"]] == ["revoked"]
    assert document["channels"] == []


async def test_rotation_successor_counts_and_yank_is_final(client, tmp_path):
    p = Publisher(client)
    old, new = SigningKey.generate(), SigningKey.generate()
    await p.create_app()
    built = build_bundle(tmp_path)
    await p.upload(built)
    await p.publish("1.0.0", built)
    record = await p.trust(old, "2025")
    await p.set_policy("dev", required_key_ids=[old.keyid])
    rotated = await client.post(
        f"/v1/registry/tenants/{p.tenant}/keys/{record['id']}/rotate",
        json={"successor_public_key": new.public.to_pem(), "name": "2026"},
        headers=p.owner,
    )
    assert rotated.status_code == 201, rotated.text
    assert rotated.json()["rotated"]["successor_key_id"] == new.keyid
    # the rotated key no longer signs new statements; its successor stands in for it
    await p.attach("1.0.0", p.release(built.digest, "1.0.0", old), expect=422)
    await p.attach("1.0.0", p.release(built.digest, "1.0.0", new))
    assert (await p.promote("1.0.0", "dev")).status_code == 201

    yanked = await client.post(
        f"{p.version_path('1.0.0')}/yank", json={"reason": "CVE-2026-0001"}, headers=p.owner
    )
    assert yanked.status_code == 200 and yanked.json()["yanked"] is True
    assert yanked.json()["channels"] == []
    again = await p.promote("1.0.0", "staging")
    assert again.status_code == 409 and again.json()["errors"][0]["message"] == "yanked"
    keys = (await client.get(f"/v1/registry/tenants/{p.tenant}/keys", headers=p.owner)).json()
    assert [msgspec.convert(k, KeyChanged).status for k in keys["items"]] == ["rotated", "active"]


async def test_trust_expiry_stops_a_key_counting_until_it_is_renewed(
    client, registry_url, tmp_path
):
    p = Publisher(client)
    signer = SigningKey.generate()
    keys = f"/v1/registry/tenants/{p.tenant}/keys"
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    refused = await client.post(
        keys,
        json={"public_key": signer.public.to_pem(), "name": "ci", "expires_at": past},
        headers=p.owner | key(),
    )
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "expires_at"
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat()
    added = await client.post(
        keys,
        json={"public_key": signer.public.to_pem(), "name": "ci", "expires_at": later},
        headers=p.owner | key(),
    )
    assert added.status_code == 201 and added.json()["expires_at"] is not None
    record = added.json()
    await p.create_app()
    built = build_bundle(tmp_path)
    await p.upload(built)
    await p.publish("1.0.0", built)
    await p.attach("1.0.0", p.release(built.digest, "1.0.0", signer))
    release = (await client.get(p.version_path("1.0.0"), headers=p.owner)).json()
    assert release["signers"][0]["expires_at"] is not None

    # the trust runs out (the clock is moved, not waited for): the key counts for nothing
    with psycopg.connect(registry_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE trusted_keys SET expires_at = now() - interval '1 second' WHERE id = %s",
            (record["id"],),
        )
    assert _reasons(await p.promote("1.0.0", "dev")) == ["unsigned"]  # no signature counts
    second = build_bundle(tmp_path)
    await p.upload(second)
    await p.publish("1.1.0", second)
    await p.attach("1.1.0", p.release(second.digest, "1.1.0", signer), expect=422)

    renewed = await client.post(
        f"{keys}/{record['id']}/renew", json={"expires_at": None}, headers=p.owner
    )
    assert renewed.status_code == 200 and renewed.json()["expires_at"] is None
    assert (await p.promote("1.0.0", "dev")).status_code == 201
    types = [t for t, topic, _ in _outbox(registry_url) if topic == "registry.key.v1"]
    assert types == ["registry.key.added", "registry.key.renewed"]

    bad = await client.post(
        f"{keys}/{record['id']}/renew", json={"expires_at": past}, headers=p.owner
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "expires_at"
    revoked = await client.post(
        f"{keys}/{record['id']}/revoke", json={"reason": "lost"}, headers=p.owner
    )
    assert revoked.status_code == 200
    again = await client.post(
        f"{keys}/{record['id']}/renew", json={"expires_at": later}, headers=p.owner
    )
    assert again.status_code == 409 and again.json()["errors"][0]["message"] == "key-revoked"


async def test_the_manifest_is_served_byte_for_byte(client, tmp_path):
    p = Publisher(client)
    await p.create_app()
    built = build_bundle(tmp_path)
    await p.upload(built)
    await p.publish("1.0.0", built)
    response = await client.get(f"{p.version_path('1.0.0')}/manifest", headers=p.owner)
    assert response.status_code == 200
    assert response.content == built.manifest.raw
    assert response.headers["docker-content-digest"] == built.digest
    assert response.headers["content-type"].startswith("application/vnd.oci.image.manifest.v1+json")


async def test_every_release_event_carries_the_bundles_app_manifest(client, registry_url, tmp_path):
    # The config blob is the signed gpucloud.yaml: appplatform's catalog reads it from the
    # events alone. One over 64 KiB is not carried (the release still publishes).
    p = Publisher(client)
    await p.create_app()
    manifest = {"schema_version": 1, "name": p.app, "version": "1.0.0", "command": ["bin/serve"]}
    small = build_bundle(tmp_path, config=manifest)
    large = build_bundle(tmp_path, config={**manifest, "padding": "x" * 70_000})
    for built in (small, large):
        await p.upload(built)
    assert (await p.publish("1.0.0", small))["bundle"]["app_manifest"] == manifest
    assert (await p.publish("1.1.0", large))["bundle"].get("app_manifest") is None
    alice = SigningKey.generate()
    await p.trust(alice)
    await p.attach("1.0.0", p.release(small.digest, "1.0.0", alice))
    assert (await p.promote("1.0.0", "dev")).status_code == 201
    carried = [
        msgspec.json.decode(payload, type=ReleaseChanged).bundle.app_manifest
        for _, topic, payload in _outbox(registry_url)
        if topic == "registry.release.v1"
        and msgspec.json.decode(payload, type=ReleaseChanged).app == p.app
    ]
    # published 1.0.0, published 1.1.0, statement on 1.0.0, promotion of 1.0.0
    assert carried == [manifest, None, manifest, manifest]
    got = await client.get(p.version_path("1.0.0"), headers=p.owner)
    assert got.json()["bundle"]["app_manifest"] == manifest


async def test_versions_are_immutable_and_semver_ordered(client, tmp_path):
    p = Publisher(client)
    await p.create_app()
    first, second = build_bundle(tmp_path), build_bundle(tmp_path)
    await p.upload(first)
    await p.upload(second)
    for version in ("1.0.0", "1.0.0-alpha.10", "1.0.0-alpha.2", "0.9.12"):
        await p.publish(version, first)
    assert (await p.publish("1.0.0", second, expect=409))["errors"][0][
        "message"
    ] == "version-exists"
    # build metadata does not change precedence: 1.0.0+other is 1.0.0
    await p.publish("1.0.0+other", second, expect=409)
    await p.publish("1.0.0", first, expect=409)
    listed = (await client.get(f"{p.base}/{p.app}/versions", headers=p.owner)).json()["items"]
    assert [v["version"] for v in listed] == ["1.0.0", "1.0.0-alpha.10", "1.0.0-alpha.2", "0.9.12"]
    bad = await p.publish("1.0.x", first, expect=422)
    assert bad["errors"][0]["field"] == "version"


async def test_uploads_are_verified_while_they_stream(client, oci, tmp_path):
    p = Publisher(client)
    await p.create_app()
    data = b"x" * 3_000_000
    claimed = digest_bytes(data[:-1] + b"y")  # one byte differs
    refused = await client.put(f"{p.base}/{p.app}/blobs/{claimed}", content=data, headers=p.owner)
    assert refused.status_code == 422 and _reasons(refused) == ["digest-mismatch"]
    assert await oci.blob_size(repository(p.tenant, p.app), claimed) is None
    assert await oci.blob_size(repository(p.tenant, p.app), digest_bytes(data)) is None

    ok = await client.put(
        f"{p.base}/{p.app}/blobs/{digest_bytes(data)}", content=data, headers=p.owner
    )
    assert ok.status_code == 201 and ok.json()["size"] == len(data)
    assert await oci.blob_size(repository(p.tenant, p.app), digest_bytes(data)) == len(data)
    again = await client.put(
        f"{p.base}/{p.app}/blobs/{digest_bytes(data)}", content=b"", headers=p.owner
    )
    assert again.status_code == 200 and again.json()["created"] is False

    # a manifest naming a blob this app never uploaded is refused
    built = build_bundle(tmp_path)
    missing = await p.publish("1.0.0", built, expect=422)
    assert missing["errors"][0]["message"] == "blob-missing"


async def test_promotion_records_are_immutable_in_the_database(client, registry_url, tmp_path):
    p = Publisher(client)
    signer = SigningKey.generate()
    await p.create_app()
    built = build_bundle(tmp_path)
    await p.upload(built)
    await p.publish("3.1.4", built)
    await p.trust(signer)
    await p.attach("3.1.4", p.release(built.digest, "3.1.4", signer))
    assert (await p.promote("3.1.4", "dev")).status_code == 201
    statements = (
        "UPDATE promotions SET channel = 'stable'",
        "DELETE FROM promotions",
        "TRUNCATE promotions",
        "UPDATE versions SET manifest_digest = 'sha256:' || repeat('0', 64)",
        "DELETE FROM statements",
        "UPDATE bundles SET manifest = 'x'",
    )
    with psycopg.connect(registry_url, autocommit=True) as conn:
        for sql in statements:
            with pytest.raises(psycopg.errors.RestrictViolation, match="immutable"):
                conn.execute(sql)
        assert conn.execute("SELECT count(*) FROM promotions").fetchone() == (1,)


async def _audit_recorded(client, tenant, digest: str, kind: str, outcome: str = "pass") -> None:
    """What audit.evidence.recorded does to registry's projection (its own consumer's handler)."""
    evidence = EvidenceRecorded(
        evidence_id=uuid.uuid4(),
        tenant_id=tenant,
        kind=kind,
        subject_digest=digest,
        outcome=outcome,
        producer=str(uuid.uuid4()),
        producer_kind="service_account",
        recorded_at=dt.datetime.now(dt.UTC),
    )
    event = new_event(
        type="audit.evidence.recorded",
        source="audit",
        subject=str(evidence.evidence_id),
        payload=evidence,
    )
    async with client.app.state.runtime.db.unit_of_work() as uow:
        await evidence_handler()(event, uow)
        await uow.commit()


async def test_audit_evidence_records_meet_the_policys_required_evidence(client, tmp_path):
    p = Publisher(client)
    alice = SigningKey.generate()
    await p.create_app()
    built = build_bundle(tmp_path)
    await p.upload(built)
    await p.publish("2.0.0", built)
    await p.trust(alice)
    await p.set_policy("staging", required_evidence=["security-scan"])
    await p.attach("2.0.0", p.release(built.digest, "2.0.0", alice))
    assert (await p.promote("2.0.0", "dev")).status_code == 201

    # a failed scan, a passing scan of another bundle, another kind, another tenant's pass:
    # none of them is this version's security-scan on record
    await _audit_recorded(client, p.tenant, built.digest, "security-scan", "fail")
    await _audit_recorded(client, p.tenant, "sha256:" + "0" * 64, "security-scan")
    await _audit_recorded(client, p.tenant, built.digest, "sbom")
    await _audit_recorded(client, uuid.uuid4(), built.digest, "security-scan")
    refused = await p.promote("2.0.0", "staging")
    assert refused.status_code == 422 and _reasons(refused) == ["missing-evidence"]

    await _audit_recorded(client, p.tenant, built.digest, "security-scan")
    promoted = await p.promote("2.0.0", "staging")
    assert promoted.status_code == 201, promoted.text
    assert promoted.json()["policy"]["evidence_found"] == ["security-scan"]
