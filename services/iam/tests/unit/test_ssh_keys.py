import base64
import struct

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from iam.domain.ssh_keys import InvalidSshKey, parse_public_key


def openssh(key) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def _blob(*fields: bytes) -> str:
    return base64.b64encode(b"".join(struct.pack(">I", len(f)) + f for f in fields)).decode()


class TestParsePublicKey:
    def test_ed25519_with_its_comment_and_openssh_fingerprint(self):
        key = ed25519.Ed25519PrivateKey.generate()
        parsed = parse_public_key(openssh(key) + " alice@laptop")
        assert (parsed.algorithm, parsed.bits, parsed.comment) == (
            "ssh-ed25519",
            256,
            "alice@laptop",
        )
        assert parsed.openssh == openssh(key)
        assert parsed.fingerprint.startswith("SHA256:") and len(parsed.fingerprint) == 50

    def test_the_fingerprint_is_the_one_ssh_keygen_prints(self):
        # `ssh-keygen -lf` of this key printed: 256 SHA256:3A08...fM2k x (ED25519)
        line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJOF8q4KbcOe4s1xpPAl7XFszjl7pTUJB0OXXRa3dzVv x"
        assert parse_public_key(line).fingerprint == (
            "SHA256:3A08KvnNdZG6+g0HwnZ63joyZimC2uBnIMnqWesfM2k"
        )

    def test_rsa_of_3072_bits_is_accepted(self):
        key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        assert parse_public_key(openssh(key)).bits == 3072

    def test_rsa_of_2048_bits_is_refused(self):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with pytest.raises(InvalidSshKey, match="at least 3072 bits"):
            parse_public_key(openssh(key))

    @pytest.mark.parametrize(
        ("text", "why"),
        [
            ("", "expected"),
            ("ssh-ed25519", "expected"),
            ("ssh-dss AAAAB3NzaC1kc3M=", "not accepted"),
            ("ecdsa-sha2-nistp256 AAAA", "not accepted"),
            ("ssh-ed25519 !!!", "base64"),
            ("ssh-ed25519 " + _blob(b"ssh-rsa", b"\x01" * 32), "does not match"),
            ("ssh-ed25519 " + _blob(b"ssh-ed25519", b"\x01" * 31), "32 bytes"),
            ("ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed").decode(), "truncated"),
            ("ssh-rsa " + _blob(b"ssh-rsa", b"\x01\x00\x01"), "exponent and a modulus"),
            ("ssh-rsa " + _blob(b"ssh-rsa", b"\x02", b"\xff" * 512), "exponent"),
        ],
    )
    def test_refusals_say_why(self, text, why):
        with pytest.raises(InvalidSshKey, match=why):
            parse_public_key(text)
