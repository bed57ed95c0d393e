"""A publisher's journey through the gateway on the running fleet, with iam's real tokens:
sign up, enroll MFA, trust a key (step-up), create an app, upload a bundle's blobs, publish,
sign, promote dev -> staging; a skipped channel and an unsigned promotion are refused; the
release read back verifies offline with the keys it carries."""

import base64
import uuid

import pytest

from gpucloud_trust import bundle as bundles
from gpucloud_trust import intoto
from gpucloud_trust.dsse import Envelope
from gpucloud_trust.keys import PublicKey, SigningKey

from .conftest import bearer, create_app, idempotency_key, sign_up, until

pytestmark = pytest.mark.e2e
PASSWORD = "registry-" + uuid.uuid4().hex + "Aa1!"


def test_publish_sign_and_promote_through_the_gateway(fleet, gateway, tmp_path):
    signed_up, owner = sign_up(gateway, "publisher", PASSWORD)
    tenant, project = signed_up["tenant"]["id"], signed_up["project"]["id"]
    auth = bearer(owner.enroll(gateway, tenant))
    signer = SigningKey.generate()
    trusted = gateway.post(
        f"/v1/registry/tenants/{tenant}/keys",
        json={"public_key": signer.public.to_pem(), "name": "release"},
        headers=auth | idempotency_key(),
    )
    assert trusted.status_code == 201, trusted.text

    base = f"/v1/registry/tenants/{tenant}/projects/{project}/apps"
    namespace = f"/v1/registry/tenants/{tenant}/projects/{project}"
    assert create_app(gateway, namespace, "inference", auth).status_code == 201
    source = tmp_path / "app"
    source.mkdir()
    (source / "serve.sh").write_text("#!/bin/sh\nexec python -m http.server\n")
    built = bundles.build(source, tmp_path / "layout", config={"cmd": ["./serve.sh"]})
    for blob in built.manifest.blobs:
        uploaded = gateway.put(
            f"{base}/inference/blobs/{blob.digest}",
            content=built.blob_path(blob.digest).read_bytes(),
            headers=auth,
        )
        assert uploaded.status_code == 201, uploaded.text
    manifest = base64.b64encode(built.manifest.raw).decode()
    published = gateway.post(
        f"{base}/inference/versions", json={"version": "0.1.0", "manifest": manifest}, headers=auth
    )
    assert published.status_code == 201, published.text
    version = f"{base}/inference/versions/0.1.0"

    unsigned = gateway.post(f"{version}/promotions", json={"channel": "dev"}, headers=auth)
    assert unsigned.status_code == 422 and unsigned.json()["errors"][0]["message"] == "unsigned"
    envelope = intoto.release_statement(
        built.digest, tenant=tenant, app="inference", version="0.1.0"
    ).sign([signer])
    attached = gateway.post(
        f"{version}/statements", json={"envelope": envelope.to_json().decode()}, headers=auth
    )
    assert attached.status_code == 201, attached.text
    skipped = gateway.post(f"{version}/promotions", json={"channel": "staging"}, headers=auth)
    assert skipped.status_code == 409, skipped.text
    policy = gateway.put(
        f"/v1/registry/tenants/{tenant}/policies/staging",
        json={"required_evidence": ["security-scan"]},
        headers=auth,
    )
    assert policy.status_code == 200, policy.text
    promoted = gateway.post(f"{version}/promotions", json={"channel": "dev"}, headers=auth)
    assert promoted.status_code == 201, promoted.text
    missing = gateway.post(f"{version}/promotions", json={"channel": "staging"}, headers=auth)
    assert missing.status_code == 422 and missing.json()["errors"][0]["message"] == (
        "missing-evidence"
    )

    # CI records its scan in audit; registry reads it from audit's events (issue 15 item 5)
    evidence = gateway.post(
        f"/v1/audit/tenants/{tenant}/projects/{project}/evidence",
        json={"kind": "security-scan", "subject_digest": built.digest, "outcome": "pass"},
        headers=auth | idempotency_key(),
    )
    assert evidence.status_code == 201, evidence.text
    about = gateway.get("/v1/audit/evidence", params={"subject": built.digest}, headers=auth)
    assert [e["evidence_id"] for e in about.json()["items"]] == [evidence.json()["evidence_id"]]

    def promote_staging():
        answer = gateway.post(f"{version}/promotions", json={"channel": "staging"}, headers=auth)
        return answer if answer.status_code == 201 else None

    promoted = until("registry sees the evidence", promote_staging, within=20, every=0.5)
    assert promoted.json()["policy"]["evidence_found"] == ["security-scan"]

    # both the evidence and the promotion are leaves of the tenant's audit trail
    def recorded():
        page = gateway.get(f"/v1/audit/tenants/{tenant}/records", headers=auth).json()
        actions = {r["record"]["action"] for r in page["items"]}
        return {"audit.evidence.recorded", "registry.release.promoted"} <= actions

    until("audit records the evidence and the promotion", recorded, within=30, every=0.5)

    release = gateway.get(version, headers=auth).json()
    assert release["channels"] == ["dev", "staging"]
    keys = [PublicKey.from_base64(s["public_key"]) for s in release["signers"]]
    envelopes = [Envelope.from_json(s["envelope"]) for s in release["statements"]]
    claim = bundles.ReleaseClaim(tenant, "inference", "0.1.0")
    verified = bundles.verify_layout(built.layout, envelopes, keys, claim=claim)
    assert verified.signer_keyids == (signer.keyid,)
