"""The agent's own check before it runs a bundle (node_agent/bundles.py): the signatures
gpuaas passed are verified again, and the bytes in the bundle directory must hash to what
was signed; a refusal starts nothing and is reported with its reason."""

import uuid
from pathlib import Path

import pytest

from gpucloud_contracts.node_sync import BundleKey, DesiredAllocation, DesiredBundle
from gpucloud_trust import bundle as bundles
from gpucloud_trust import intoto
from gpucloud_trust.keys import SigningKey
from node_agent.bundles import BundleError, verify_before_run
from node_agent.reconcile import Reconciler

TENANT = uuid.uuid4()
SIGNER, STRANGER = SigningKey.generate(), SigningKey.generate()


def _built(tmp_path: Path) -> bundles.Bundle:
    src = tmp_path / "src"
    src.mkdir()
    (src / "run.sh").write_text("#!/bin/sh\necho hi\n")
    built = bundles.build(src, tmp_path / "staging")
    # the bundle directory holds one OCI layout per manifest digest
    layout = tmp_path / "bundles" / built.digest.removeprefix("sha256:")
    layout.parent.mkdir()
    built.layout.rename(layout)
    return bundles.Bundle(built.manifest, layout)


def _desired(digest: str, signer=SIGNER, status="active", key=SIGNER) -> DesiredBundle:
    envelope = intoto.release_statement(digest, tenant=str(TENANT), app="svc", version="1.0.0")
    return DesiredBundle(
        tenant_id=TENANT, app="svc", version="1.0.0", digest=digest, channel="stable",
        envelopes=[envelope.sign([signer]).to_json().decode()],
        keys=[BundleKey(public_key=key.public.to_base64(), status=status)],
    )  # fmt: skip


def test_a_signed_untampered_bundle_verifies(tmp_path):
    built = _built(tmp_path)
    verified = verify_before_run(_desired(built.digest), tmp_path / "bundles")
    assert verified.signer_keyids == (SIGNER.keyid,)


@pytest.mark.parametrize(
    ("desired", "reason"),
    [
        (lambda d: _desired(d, signer=STRANGER), "untrusted"),
        (lambda d: _desired(d, status="revoked"), "revoked"),
        (lambda d: _desired(d, key=STRANGER), "untrusted"),
    ],
)  # fmt: skip
def test_a_bad_signature_is_refused_without_reading_bytes(tmp_path, desired, reason):
    with pytest.raises(BundleError) as refused:
        verify_before_run(desired("sha256:" + "a" * 64), None)
    assert refused.value.reason == reason


def test_a_one_byte_tamper_of_a_layer_is_refused(tmp_path):
    built = _built(tmp_path)
    layer = built.blob_path(built.manifest.layers[0].digest)
    data = bytearray(layer.read_bytes())
    data[100] ^= 1
    layer.write_bytes(bytes(data))
    with pytest.raises(BundleError) as refused:
        verify_before_run(_desired(built.digest), tmp_path / "bundles")
    assert refused.value.reason == "blob-digest"


def test_a_missing_bundle_is_refused(tmp_path):
    (tmp_path / "bundles").mkdir()
    with pytest.raises(BundleError) as refused:
        verify_before_run(_desired("sha256:" + "b" * 64), tmp_path / "bundles")
    assert refused.value.reason == "blob-missing"


def test_the_reconciler_starts_nothing_for_a_refused_bundle_and_reports_why(tmp_path):
    reconciler = Reconciler(tmp_path / "state.json", "exec sleep 30")
    allocation = uuid.uuid4()
    desired = DesiredAllocation(
        id=allocation, sku="h100-80gb", mig_profile=None, state="scheduled", instances=[],
        bundle=_desired("sha256:" + "c" * 64, signer=STRANGER),
    )  # fmt: skip
    assert reconciler.reconcile([desired]) is True
    assert reconciler.workloads == {}
    assert reconciler.observed() == {str(allocation): "failed"}
    assert reconciler.failures() == {str(allocation): "untrusted"}
    reconciler.stop_all()
