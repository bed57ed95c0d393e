import hashlib

import pytest

from gpucloud_trust.keys import InvalidKey, PublicKey, SigningKey, key_id, load_public


def test_key_id_is_sha256_of_the_raw_public_key():
    key = SigningKey.generate()
    assert key.keyid == "sha256:" + hashlib.sha256(key.public.raw).hexdigest()
    assert key_id(key.public.raw) == key.keyid


def test_save_and_load_with_a_passphrase(tmp_path):
    key = SigningKey.generate()
    public_path = key.save(tmp_path / "publisher.pem", passphrase=b"correct horse")
    assert (tmp_path / "publisher.pem").stat().st_mode & 0o777 == 0o600
    assert "ENCRYPTED" in (tmp_path / "publisher.pem").read_text()
    loaded = SigningKey.load(tmp_path / "publisher.pem", passphrase=b"correct horse")
    assert loaded.keyid == key.keyid == load_public(public_path).keyid
    with pytest.raises(InvalidKey):
        SigningKey.load(tmp_path / "publisher.pem", passphrase=b"wrong")


def test_public_key_encodings_round_trip():
    public = SigningKey.generate().public
    assert PublicKey.from_pem(public.to_pem()).keyid == public.keyid
    assert PublicKey.from_base64(public.to_base64()).keyid == public.keyid


@pytest.mark.parametrize("text", ["", "AAAA", "not base64!"])
def test_a_malformed_public_key_is_refused(text):
    with pytest.raises(InvalidKey):
        PublicKey.from_base64(text)


def test_a_non_ed25519_key_is_refused():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(InvalidKey, match="Ed25519"):
        PublicKey.from_pem(pem)
