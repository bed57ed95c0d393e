"""Signed notes, byte for byte against golang.org/x/mod/sumdb/note.

Vectors: the PeterNeumann / EnochRoot keys and signatures of golang/mod sumdb/note/note_test.go
(commit 02c991387e35f9e4c0a9b7ce137717055f8d716d, BSD-3-Clause), and the key pairs of
transparency-dev/formats log/note_test.go (commit 5242c17862d31acd165afafa140ecc973a621469,
Apache-2.0). Ed25519 signatures are deterministic: signing the same text with the same key
must give the same bytes.
"""

import pytest

from gpucloud_trust.note import (
    AmbiguousKey,
    BadSignature,
    MalformedKey,
    MalformedNote,
    Signature,
    Signer,
    UnverifiedNote,
    Verifier,
    key_id,
    open_note,
    sign_note,
    valid_key_name,
)

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfq"
    "dngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwn"
    "WLox33WWd1RvMc+QQ=\n"
)
KEY_PAIRS = [  # transparency-dev/formats log/note_test.go
    (
        "Log+2271c621+AemuH5ooBpEPcr+W8onrjA1NfuzBVHdezakU81Ekarvs",
        "PRIVATE+KEY+Log+2271c621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ",
    ),
    (
        "Known+451c786d+AXAQ0T7lbwuY4ABJ9/MYY9bWV3hmSyOGVt2x42NkmdUH",
        "PRIVATE+KEY+Known+451c786d+AQPRoE2+Z+Ed1HaHBA9F/FfracvcZ2rDU39kCecMEoci",
    ),
    (
        "KnownAgain+4893b26c+AQ+LR7BFF/F/dkpIBjBpSvT0crkteizuUkavAoGeaYMj",
        "PRIVATE+KEY+KnownAgain+4893b26c+ARhZda/l25zjGZswYLDZsLNRzNpmv5wYTN9IoTr1OJ2+",
    ),
    (
        "Unknown+fdbb2e08+AWgRIYZ+8x1Vl+1Q+sR8zciNHiYI1SdlBjNw+RV0rots",
        "PRIVATE+KEY+Unknown+fdbb2e08+Aav2knTC6orbhXX8pMWuNiWgO+Wwk2DB+h1eU2Q1W1nU",
    ),
]

PETER = Verifier.from_vkey(PETER_VKEY)
ENOCH = Verifier.from_vkey(ENOCH_VKEY)


def message(*signature_lines: str) -> bytes:
    return (TEXT + "\n" + "".join(signature_lines)).encode()


class TestKeys:
    def test_known_verifier_key(self):
        assert PETER.name == "PeterNeumann"
        assert PETER.key_id == 0xC74F20A3
        assert PETER.vkey == PETER_VKEY

    def test_every_substring_and_every_changed_byte_of_a_vkey_is_refused(self):
        for i in range(len(PETER_VKEY) + 1):
            for j in range(i + 1, len(PETER_VKEY) + 1):
                if (i, j) != (0, len(PETER_VKEY)):
                    with pytest.raises(MalformedKey):
                        Verifier.from_vkey(PETER_VKEY[i:j])
        for i in range(len(PETER_VKEY)):
            changed = PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :]
            with pytest.raises(MalformedKey):
                Verifier.from_vkey(changed)

    def test_wrong_length_and_unknown_algorithm_with_a_matching_hash_are_refused(self):
        for bad in (
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        ):
            with pytest.raises(MalformedKey):
                Verifier.from_vkey(bad)

    def test_every_substring_and_every_changed_byte_of_an_skey_is_refused(self):
        assert Signer.from_skey(PETER_SKEY).verifier == PETER
        for i in range(len(PETER_SKEY) + 1):
            for j in range(i + 1, len(PETER_SKEY) + 1):
                if (i, j) != (0, len(PETER_SKEY)):
                    with pytest.raises(MalformedKey):
                        Signer.from_skey(PETER_SKEY[i:j])
        for i in range(len(PETER_SKEY)):
            changed = PETER_SKEY[:i] + chr(ord(PETER_SKEY[i]) + 1) + PETER_SKEY[i + 1 :]
            with pytest.raises(MalformedKey):
                Signer.from_skey(changed)

    @pytest.mark.parametrize(("vkey", "skey"), KEY_PAIRS)
    def test_signer_keys_derive_their_published_verifier_keys(self, vkey, skey):
        signer = Signer.from_skey(skey)
        assert signer.verifier.vkey == vkey
        assert signer.encoded_private_key() == skey

    def test_generated_keys_round_trip_and_never_show_the_secret(self):
        signer = Signer.generate("audit.gpucloud.example/log")
        skey = signer.encoded_private_key()
        assert Signer.from_skey(skey).verifier == signer.verifier
        assert Verifier.from_vkey(signer.verifier.vkey) == signer.verifier
        # PRIVATE+KEY+<name>+<hash>+<base64 key>: the key's base64 may itself hold a '+'
        secret = skey.split("+", 4)[4]
        assert secret and secret not in repr(signer)
        assert signer.key_id == key_id(signer.name, b"\x01" + signer.verifier.public_key)

    def test_key_names(self):
        assert valid_key_name("sum.golang.org") and valid_key_name("Señor-1")
        for bad in ("", "a+b", "a b", "a\u00a0b", "a\u3000b", "a\tb", "a\ud800b"):
            assert not valid_key_name(bad)


class TestSign:
    def test_signing_matches_the_go_implementation_byte_for_byte(self):
        signer = Signer.from_skey(PETER_SKEY)
        assert sign_note(TEXT, signer) == message(PETER_SIG)

    def test_a_resigned_key_replaces_its_old_signature(self):
        signer = Signer.from_skey(PETER_SKEY)
        old = Signature("PeterNeumann", 0xC74F20A3, b"stale signature")
        assert sign_note(TEXT, signer, keep=[old]) == message(PETER_SIG)

    def test_existing_signatures_are_kept_before_new_ones(self):
        enoch = open_note(message(ENOCH_SIG), [ENOCH]).signatures[0]
        signed = sign_note(TEXT, Signer.from_skey(PETER_SKEY), keep=[enoch])
        assert signed == message(ENOCH_SIG, PETER_SIG)

    def test_bad_texts_are_refused(self):
        signer = Signer.from_skey(PETER_SKEY)
        for bad in ("abc", "a\x01b\n", "a\ud800\n"):
            with pytest.raises(MalformedNote):
                sign_note(bad, signer)
        with pytest.raises(MalformedNote):
            sign_note(TEXT)
        with pytest.raises(MalformedNote):
            sign_note(TEXT, signer, keep=[Signature("a+b", 1, b"sig")])


class TestOpen:
    def test_one_known_key_verifies_and_the_other_is_kept_unverified(self):
        note = open_note(message(PETER_SIG, ENOCH_SIG), [PETER])
        assert note.text == TEXT
        assert [s.name for s in note.signatures] == ["PeterNeumann"]
        assert [(s.name, s.key_id) for s in note.unverified] == [("EnochRoot", 0xAF0CFE78)]
        assert note.signatures[0].line == PETER_SIG

    def test_both_known(self):
        note = open_note(message(PETER_SIG, ENOCH_SIG), [PETER, ENOCH])
        assert [s.name for s in note.signatures] == ["PeterNeumann", "EnochRoot"]
        assert note.unverified == ()

    def test_no_known_key_is_refused_with_the_parsed_note(self):
        with pytest.raises(UnverifiedNote) as refused:
            open_note(message(PETER_SIG, ENOCH_SIG), [])
        assert len(refused.value.note.unverified) == 2

    def test_a_duplicated_known_key_is_ambiguous_only_when_used(self):
        with pytest.raises(AmbiguousKey):
            open_note(message(ENOCH_SIG), [ENOCH, PETER, ENOCH])
        assert open_note(message(PETER_SIG), [ENOCH, PETER, ENOCH]).signatures

    def test_more_than_100_signatures_is_malformed(self):
        with pytest.raises(MalformedNote):
            open_note(message(PETER_SIG * 101), [PETER])
        with pytest.raises(MalformedNote):
            open_note(message(PETER_SIG * 101), [])

    def test_a_known_key_with_a_bad_signature_rejects_the_note(self):
        with pytest.raises(BadSignature):
            open_note(message(PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]), [PETER])
        tampered = message(PETER_SIG).replace(b"cryptography", b"cryptographx")
        with pytest.raises(BadSignature):
            open_note(tampered, [PETER])

    def test_repeated_signatures_are_dropped(self):
        enoch_bad = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
        note = open_note(message(PETER_SIG, PETER_SIG, ENOCH_SIG, ENOCH_SIG, enoch_bad), [PETER])
        assert len(note.signatures) == 1
        assert len(note.unverified) == 2

    @pytest.mark.parametrize(
        "bad",
        [
            TEXT,
            TEXT + "\n",
            TEXT + "\n" + PETER_SIG[:-1],
            "\x01" + TEXT + "\n" + PETER_SIG,
            TEXT + "\n" + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1F"
            "FYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
            TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
            TEXT + "\n" + "- PeterNeumann " + PETER_SIG.split(" ", 2)[2],
            TEXT + "\n" + "— PeterNeumann\n",
            TEXT + "\n" + "— PeterNeumann AAAA\n",
        ],
    )
    def test_malformed_notes(self, bad):
        with pytest.raises(MalformedNote):
            open_note(bad.encode(), [PETER])

    def test_invalid_utf8_is_malformed(self):
        with pytest.raises(MalformedNote):
            open_note(b"\xff" + message(PETER_SIG), [PETER])

    def test_the_text_ends_at_the_last_blank_line(self):
        signer = Signer.generate("example.com/log")
        text = "first paragraph\n\nsecond paragraph\n"
        note = open_note(sign_note(text, signer), [signer.verifier])
        assert note.text == text
