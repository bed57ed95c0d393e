"""SSH public keys users register to `ssh` into their allocations: which keys are
accepted and how they are named. Pure (standard library only).

Accepted: `ssh-ed25519`, and `ssh-rsa` of at least 3072 bits (NIST SP 800-57 and OpenSSH's
own default since 8.x; smaller RSA keys, DSA and anything else are refused). The key is
given in OpenSSH's one-line format, `<algorithm> <base64 blob> [comment]`; the blob is
parsed (RFC 4253 §6.6: length-prefixed strings and mpints) so a blob that is not the key it
claims to be is refused. The fingerprint is OpenSSH's: `SHA256:` + unpadded base64 of the
SHA-256 of the blob (`ssh-keygen -lf` prints the same).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import struct

ED25519 = "ssh-ed25519"
RSA = "ssh-rsa"
MIN_RSA_BITS = 3072
MAX_RSA_BITS = 16384
MAX_KEYS_PER_USER = 20
MAX_NAME = 100


class InvalidSshKey(ValueError):
    """Why a public key is refused (shown to the user)."""


@dataclasses.dataclass(frozen=True)
class SshPublicKey:
    algorithm: str
    blob: bytes
    bits: int
    comment: str | None

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    @property
    def openssh(self) -> str:
        """The key in one line, without its comment."""
        return f"{self.algorithm} {base64.b64encode(self.blob).decode()}"


def _strings(blob: bytes) -> list[bytes]:
    out, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise InvalidSshKey("the key data is truncated")
        (length,) = struct.unpack(">I", blob[offset : offset + 4])
        offset += 4
        if offset + length > len(blob):
            raise InvalidSshKey("the key data is truncated")
        out.append(blob[offset : offset + length])
        offset += length
    return out


def parse_public_key(text: str) -> SshPublicKey:
    """The key in `text`, or InvalidSshKey saying why it is not accepted."""
    parts = text.strip().split(None, 2)
    if len(parts) < 2:
        raise InvalidSshKey("expected '<algorithm> <base64 key> [comment]' (an OpenSSH public key)")
    algorithm, encoded = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) == 3 else None
    if algorithm not in (ED25519, RSA):
        raise InvalidSshKey(f"{algorithm[:40]!r} keys are not accepted: use ssh-ed25519 or ssh-rsa")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSshKey("the key is not valid base64") from None
    fields = _strings(blob)
    if not fields or fields[0] != algorithm.encode():
        raise InvalidSshKey("the key data does not match its algorithm")
    if algorithm == ED25519:
        if len(fields) != 2 or len(fields[1]) != 32:
            raise InvalidSshKey("an ed25519 key is 32 bytes")
        bits = 256
    else:
        if len(fields) != 3:
            raise InvalidSshKey("an RSA key has an exponent and a modulus")
        exponent = int.from_bytes(fields[1], "big")
        modulus = int.from_bytes(fields[2], "big")
        bits = modulus.bit_length()
        if exponent < 3 or exponent % 2 == 0:
            raise InvalidSshKey("the RSA exponent is not valid")
        if bits < MIN_RSA_BITS:
            raise InvalidSshKey(f"RSA keys need at least {MIN_RSA_BITS} bits (this one has {bits})")
        if bits > MAX_RSA_BITS:
            raise InvalidSshKey(f"RSA keys of more than {MAX_RSA_BITS} bits are not accepted")
    return SshPublicKey(algorithm, blob, bits, comment[:MAX_NAME] if comment else None)
