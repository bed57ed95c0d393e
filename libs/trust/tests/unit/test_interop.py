"""Interoperability: envelopes made here verify with securesystemslib (the DSSE reference
library of the Secure Systems Lab) and the other way round, over the same Ed25519 keys."""

from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.signer import CryptoSigner, SSlibKey

from gpucloud_trust import dsse, intoto
from gpucloud_trust.digests import digest_bytes
from gpucloud_trust.keys import SigningKey

STATEMENT = intoto.release_statement(
    digest_bytes(b"manifest"), tenant="t", app="a", version="1.0.0"
).to_json()


def _sslib(key: SigningKey) -> tuple[CryptoSigner, SSlibKey]:
    public = SSlibKey.from_crypto(key.key.public_key(), keyid=key.keyid)
    return CryptoSigner(key.key, public), public


def test_our_envelope_verifies_with_securesystemslib():
    key = SigningKey.generate()
    ours = dsse.sign(dsse.IN_TOTO_PAYLOAD_TYPE, STATEMENT, [key])
    theirs = SslibEnvelope.from_dict(ours.to_dict())
    _, public = _sslib(key)
    assert set(theirs.verify([public], 1)) == {key.keyid}


def test_a_securesystemslib_envelope_verifies_here():
    key = SigningKey.generate()
    signer, _ = _sslib(key)
    theirs = SslibEnvelope(payload=STATEMENT, payload_type=dsse.IN_TOTO_PAYLOAD_TYPE, signatures={})
    theirs.sign(signer)
    ours = dsse.Envelope.from_dict(theirs.to_dict())
    assert dsse.verify(ours, [key.public]).signer_keyids == (key.keyid,)
