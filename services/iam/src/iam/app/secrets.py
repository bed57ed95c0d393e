"""Secret material: argon2id password hashes, random opaque tokens and their digests.

Opaque tokens (refresh tokens, API keys) carry 256 random bits, so a plain SHA-256 digest
is enough to store them (no dictionary to attack), and lookups by digest stay indexable.
Comparisons of secrets are constant-time. Nothing here logs.
"""

import base64
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# argon2id with the library's RFC 9106 "low memory" defaults (64 MiB, t=3, p=4).
_HASHER = PasswordHasher()
# Verified against when the account does not exist, so that a missing account and a wrong
# password take the same time (no user enumeration by timing).
_DUMMY_HASH = _HASHER.hash("not-a-real-password-" + secrets.token_hex(8))


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)


def new_secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def same_digest(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


class SecretBox:
    """Encryption at rest for secrets iam must read back (TOTP seeds): AES-256-GCM under a
    key derived with scrypt from GPUCLOUD_IAM_KEY_PASSPHRASE. The associated data binds a
    ciphertext to its row (the user id), so a sealed secret cannot be moved to another
    account. Without a passphrase (a local devstack) secrets are stored as they are and
    flagged unencrypted, as the signing keys are."""

    _SALT = b"gpucloud/iam/secret-box/v1"  # key separation from the signing-key encryption

    def __init__(self, passphrase: str | None) -> None:
        self._aead = (
            AESGCM(hashlib.scrypt(passphrase.encode(), salt=self._SALT, n=2**14, r=8, p=1,
                                  dklen=32))
            if passphrase
            else None
        )  # fmt: skip

    def __repr__(self) -> str:  # never render key material
        return "SecretBox(...)"

    @property
    def encrypts(self) -> bool:
        return self._aead is not None

    def seal(self, plaintext: bytes, associated: bytes) -> bytes:
        if self._aead is None:
            return plaintext
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, plaintext, associated)

    def open(self, sealed: bytes, encrypted: bool, associated: bytes) -> bytes:
        if not encrypted:
            return sealed
        if self._aead is None:
            raise RuntimeError("an encrypted secret needs GPUCLOUD_IAM_KEY_PASSPHRASE")
        return self._aead.decrypt(sealed[:12], sealed[12:], associated)
