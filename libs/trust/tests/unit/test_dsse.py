"""DSSE v1: the PAE and envelope against the specification's own example and test vectors
(secure-systems-lab/dsse protocol.md and testvectors/), and the threshold rules."""

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from gpucloud_trust import dsse
from gpucloud_trust.keys import SigningKey

# RFC 8032 test keys 1 and 2, the keys A and B of the DSSE test vectors.
KEY_A = SigningKey.from_seed(
    bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
)
KEY_B = SigningKey.from_seed(
    bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
)
STATEMENT = b'{"_type":"https://in-toto.io/Statement/v1"}'
SIG_A = "2WAfaHm5jluo0w+0rk8uVkluELJYWjSmU9x7EUzx+AyteDGJ4/nqyJXfmAUVFIAoQafWm7AxBZNw5M9ixNHiCA=="
SIG_B = "c1+67/aT0yqEpwx8PsVY3MLHsj9D0CZ014/Fv/QlG59P+9CobUZ7xECJ/V3USG0Ob9CiE5LjReEZUzNF2l7eBw=="


def test_pae_matches_the_specification_example():
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_the_specification_example_envelope_verifies_over_our_pae():
    """protocol.md's ECDSA P-256 example (r||s signature) verifies against our PAE bytes."""
    x = 46950820868899156662930047687818585632848591499744589407958293238635476079160
    y = 5640078356564379163099075877009565129882514886557779369047442380624545832820
    public = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    envelope = dsse.Envelope.from_json(
        '{"payload": "aGVsbG8gd29ybGQ=", "payloadType": "http://example.com/HelloWorld",'
        ' "signatures": [{"sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTf'
        'UiHqJPcIAriEGAHTVeCUjW2JIZA=="}]}'
    )
    raw = envelope.signatures[0].sig
    der = encode_dss_signature(int.from_bytes(raw[:32]), int.from_bytes(raw[32:]))
    public.verify(der, dsse.pae(envelope.payload_type, envelope.payload), ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize(
    ("payload_type", "payload", "expected"),
    [
        # an empty body is "... 0 " with the trailing space
        (dsse.IN_TOTO_PAYLOAD_TYPE, b"", b"DSSEv1 28 application/vnd.in-toto+json 0 "),
        # LEN is the byte length of UTF8(type): 29, not the 28 characters
        (
            "application/vnd.ex\u00e4mple+json",
            b"{}",
            b"DSSEv1 29 application/vnd.ex\xc3\xa4mple+json 2 {}",
        ),
    ],
)
def test_pae_lengths_are_byte_lengths(payload_type, payload, expected):
    assert dsse.pae(payload_type, payload) == expected


def test_ed25519_signatures_reproduce_the_test_vectors():
    """Ed25519 is deterministic: our sign() gives the vectors' signatures byte for byte."""
    envelope = dsse.sign(dsse.IN_TOTO_PAYLOAD_TYPE, STATEMENT, [KEY_A, KEY_B])
    sigs = [base64.b64encode(s.sig).decode() for s in envelope.signatures]
    assert sigs == [SIG_A, SIG_B]
    assert envelope.signatures[0].keyid == KEY_A.keyid


def _envelope(payload_type=dsse.IN_TOTO_PAYLOAD_TYPE, sigs=((SIG_A, "A"),), payload=STATEMENT):
    return dsse.Envelope.from_dict(
        {
            "payloadType": payload_type,
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"sig": s, "keyid": k} if k else {"sig": s} for s, k in sigs],
        }
    )


def test_vector_single_signature_accepts():
    verified = dsse.verify(_envelope(), [KEY_A.public])
    assert verified.payload == STATEMENT
    assert verified.signer_keyids == (KEY_A.keyid,)


def test_vector_url_safe_base64_accepts():
    envelope = dsse.Envelope.from_dict(
        {
            "payload": "-_-_Pj8=",
            "payloadType": dsse.IN_TOTO_PAYLOAD_TYPE,
            "signatures": [
                {
                    "sig": "P-_KHICeR7tI6S_YyejJTRtrXhcQyQ2LYPaL8h90KjC9qN8HU_svOQ6TuDOT1HIrsGW"
                    "886DbWNWcCmX5twLrAw==",
                    "keyid": "A",
                }
            ],
        }
    )
    assert dsse.verify(envelope, [KEY_A.public]).payload == bytes.fromhex("fbffbf3e3f")


def test_vector_payload_type_swapped_rejects():
    with pytest.raises(dsse.VerificationFailed):
        dsse.verify(
            _envelope("application/vnd.example.other+json"),
            [KEY_A.public],
            payload_types=[dsse.IN_TOTO_PAYLOAD_TYPE, "application/vnd.example.other+json"],
        )


def test_vector_empty_payload_type_rejects_although_the_signature_is_valid():
    empty_type_sig = (
        "iC3q/+3Rm0+lpAJRueDmDh15PnwCfxKmS0NAfKsbv+zgulXQC/WM9trc+j1XEqlwDIg/vf/uNfebeD6sxInrDg=="
    )
    envelope = _envelope("", ((empty_type_sig, "A"),))
    assert dsse.signers(envelope, [KEY_A.public]) == (KEY_A.keyid,)
    with pytest.raises(dsse.VerificationFailed, match="unsupported payload type"):
        dsse.verify(envelope, [KEY_A.public])


def test_vector_threshold_two_distinct_keys_accepts():
    envelope = _envelope(sigs=((SIG_A, "A"), (SIG_B, "B")))
    verified = dsse.verify(envelope, [KEY_A.public, KEY_B.public], threshold=2)
    assert set(verified.signer_keyids) == {KEY_A.keyid, KEY_B.keyid}


def test_vector_one_key_twice_does_not_meet_a_threshold_of_two():
    envelope = _envelope(sigs=((SIG_A, "A"), (SIG_A, "A")))
    with pytest.raises(dsse.VerificationFailed, match="1 of the required 2"):
        dsse.verify(envelope, [KEY_A.public, KEY_B.public], threshold=2)


def test_vector_threshold_two_without_keyids_accepts():
    envelope = _envelope(sigs=((SIG_A, ""), (SIG_B, "")))
    assert len(dsse.verify(envelope, [KEY_A.public, KEY_B.public], threshold=2).signer_keyids) == 2


def test_a_wrong_keyid_hint_still_finds_the_signer():
    """keyid is unauthenticated: it narrows the search, never decides it."""
    envelope = _envelope(sigs=((SIG_A, KEY_B.keyid),))
    assert dsse.verify(envelope, [KEY_A.public, KEY_B.public]).signer_keyids == (KEY_A.keyid,)


def test_an_untrusted_signer_counts_for_nothing():
    with pytest.raises(dsse.VerificationFailed, match="0 of the required 1"):
        dsse.verify(_envelope(), [KEY_B.public])


def test_a_one_byte_change_of_the_payload_breaks_the_signature():
    with pytest.raises(dsse.VerificationFailed):
        dsse.verify(_envelope(payload=STATEMENT.replace(b"v1", b"v2")), [KEY_A.public])


def test_the_envelope_round_trips_through_json():
    envelope = dsse.sign(dsse.IN_TOTO_PAYLOAD_TYPE, STATEMENT, [KEY_A])
    again = dsse.Envelope.from_json(envelope.to_json())
    assert again == envelope
    assert json.loads(envelope.to_json())["signatures"][0]["keyid"] == KEY_A.keyid


def test_add_signature_makes_a_co_signed_envelope():
    envelope = dsse.add_signature(dsse.sign(dsse.IN_TOTO_PAYLOAD_TYPE, STATEMENT, [KEY_A]), KEY_B)
    assert len(dsse.verify(envelope, [KEY_A.public, KEY_B.public], threshold=2).signer_keyids) == 2


@pytest.mark.parametrize(
    "raw",
    [
        "[]",
        '{"payload": "", "signatures": []}',
        '{"payloadType": "x", "payload": "", "signatures": {}}',
        '{"payloadType": "x", "payload": "%%%", "signatures": []}',
        '{"payloadType": "x", "payload": "", "signatures": [{"keyid": "a"}]}',
        "not json",
    ],
)
def test_malformed_envelopes_are_refused(raw):
    with pytest.raises(dsse.InvalidEnvelope):
        dsse.Envelope.from_json(raw)
