"""Runtime bundles: deterministic builds, and offline verification that names the first
reason a pulled bundle fails (one-byte tamper of a layer, of the manifest, a missing blob,
unsigned, untrusted, below threshold, a statement about another release)."""

import json
import os
import tarfile
from pathlib import Path

import pytest

from gpucloud_trust import bundle, intoto
from gpucloud_trust.bundle import BundleError, ReleaseClaim
from gpucloud_trust.digests import digest_bytes, digest_file
from gpucloud_trust.keys import SigningKey

CLAIM = ReleaseClaim(tenant="t-1", app="llm-server", version="1.2.0")
PUBLISHER, COSIGNER, STRANGER = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()


def _tree(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "serve").write_text("#!/bin/sh\necho serving\n")
    (root / "bin" / "serve").chmod(0o755)
    (root / "model.bin").write_bytes(os.urandom(4096))
    (root / "README").write_text("weights and a server\n")
    (root / "latest").symlink_to("model.bin")
    return root


@pytest.fixture
def built(tmp_path) -> bundle.Bundle:
    return bundle.build(
        _tree(tmp_path / "app"), tmp_path / "layout", config={"entrypoint": ["bin/serve"]}
    )


def _release(digest: str, *signers: SigningKey, claim: ReleaseClaim = CLAIM):
    statement = intoto.release_statement(
        digest, tenant=claim.tenant, app=claim.app, version=claim.version
    )
    return statement.sign(list(signers))


def test_the_same_tree_builds_the_same_digest_anywhere(tmp_path):
    source = _tree(tmp_path / "a")
    first = bundle.build(source, tmp_path / "one")
    os.utime(source / "README", (1, 1))  # mtimes and ownership do not reach the tar
    second = bundle.build(source, tmp_path / "two")
    assert first.digest == second.digest
    assert first.manifest.raw == second.manifest.raw


def test_layers_are_deterministic_tars(built):
    layer = built.manifest.layers[0]
    with tarfile.open(built.blob_path(layer.digest)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["README", "bin", "bin/serve", "latest", "model.bin"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    modes = {m.name: m.mode for m in members}
    assert modes["bin/serve"] == 0o755 and modes["README"] == 0o644
    assert next(m for m in members if m.name == "latest").linkname == "model.bin"


def test_the_layout_is_an_oci_image_layout(built):
    index = json.loads((built.layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == built.digest
    assert json.loads((built.layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    manifest = json.loads(built.manifest.raw)
    assert manifest["mediaType"] == bundle.MANIFEST_MEDIA_TYPE
    assert manifest["artifactType"] == bundle.ARTIFACT_TYPE
    for descriptor in built.manifest.blobs:
        assert digest_file(built.blob_path(descriptor.digest)) == (
            descriptor.digest,
            descriptor.size,
        )
    assert bundle.load_layout(built.layout).digest == built.digest


def test_a_signed_untampered_bundle_verifies(built):
    verified = bundle.verify_layout(
        built.layout, [_release(built.digest, PUBLISHER)], [PUBLISHER.public], claim=CLAIM
    )
    assert verified.signer_keyids == (PUBLISHER.keyid,)
    assert verified.manifest_digest == built.digest


def _flip_one_byte(path: Path, at: int = 700) -> None:
    data = bytearray(path.read_bytes())
    data[at % len(data)] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def _reason(built, envelopes, trusted, **kw) -> str:
    with pytest.raises(BundleError) as caught:
        bundle.verify_layout(built.layout, envelopes, trusted, claim=CLAIM, **kw)
    return caught.value.reason


def test_one_byte_tamper_of_a_layer_is_refused(built):
    _flip_one_byte(built.blob_path(built.manifest.layers[0].digest))
    assert _reason(built, [_release(built.digest, PUBLISHER)], [PUBLISHER.public]) == "blob-digest"


def test_one_byte_tamper_of_the_manifest_is_refused(built):
    envelopes = [_release(built.digest, PUBLISHER)]
    _flip_one_byte(built.blob_path(built.digest), at=40)
    reason = _reason(built, envelopes, [PUBLISHER.public], manifest_digest=built.digest)
    assert reason == "manifest-digest"


def test_a_manifest_swapped_for_another_signed_one_is_refused(built, tmp_path):
    """The manifest re-pointed at other layers hashes to a digest no release names."""
    other = bundle.build(_tree(tmp_path / "other"), tmp_path / "other-layout")
    envelopes = [_release(built.digest, PUBLISHER)]
    raw = other.manifest.raw
    assert _reason_for_raw(raw, built, envelopes) == "manifest-digest"


def _reason_for_raw(raw, built, envelopes):
    with pytest.raises(BundleError) as caught:
        bundle.verify(
            raw,
            bundle.layout_opener(built.layout),
            envelopes,
            [PUBLISHER.public],
            manifest_digest=built.digest,
            claim=CLAIM,
        )
    return caught.value.reason


def test_a_missing_blob_and_a_short_blob_are_refused(built):
    envelopes, trusted = [_release(built.digest, PUBLISHER)], [PUBLISHER.public]
    config = built.blob_path(built.manifest.config.digest)
    config.write_bytes(config.read_bytes()[:-1])
    assert _reason(built, envelopes, trusted) == "blob-size"
    config.unlink()
    assert _reason(built, envelopes, trusted) == "blob-missing"


def test_unsigned_untrusted_and_below_threshold_are_refused(built):
    trusted = [PUBLISHER.public, COSIGNER.public]
    assert _reason(built, [], trusted) == "unsigned"
    assert _reason(built, [_release(built.digest, STRANGER)], trusted) == "untrusted"
    one = [_release(built.digest, PUBLISHER)]
    assert _reason(built, one, trusted, threshold=2) == "below-threshold"
    two = [_release(built.digest, PUBLISHER), _release(built.digest, COSIGNER)]
    assert len(bundle.verify_layout(built.layout, two, trusted, threshold=2).signer_keyids) == 2


def test_a_release_statement_of_another_app_or_digest_counts_for_nothing(built):
    other_claim = ReleaseClaim(tenant="t-1", app="llm-server", version="9.9.9")
    wrong_version = _release(built.digest, PUBLISHER, claim=other_claim)
    wrong_digest = _release(digest_bytes(b"something else"), PUBLISHER)
    for envelope in (wrong_version, wrong_digest):
        assert _reason(built, [envelope], [PUBLISHER.public]) == "untrusted"


def test_a_provenance_statement_is_not_a_release_signature(built):
    provenance = intoto.provenance_statement(
        built.digest,
        build_type="https://gpucloud.dev/build/bundle/v1",
        builder_id="ci://example",
        external_parameters={"source": "git+https://example.test/app@abc"},
    ).sign([PUBLISHER])
    assert _reason(built, [provenance], [PUBLISHER.public]) == "untrusted"


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b'{"schemaVersion": 1}',
        json.dumps({"schemaVersion": 2, "mediaType": bundle.MANIFEST_MEDIA_TYPE}).encode(),
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": bundle.MANIFEST_MEDIA_TYPE,
                "config": {"mediaType": "x", "digest": "sha256:abc", "size": 1},
                "layers": [],
            }
        ).encode(),
    ],
)
def test_malformed_manifests_are_refused(raw):
    with pytest.raises(BundleError) as caught:
        bundle.Manifest.parse(raw)
    assert caught.value.reason == "manifest-invalid"
