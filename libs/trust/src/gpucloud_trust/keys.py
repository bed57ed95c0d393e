"""Ed25519 signing keys for publishers: generate, save and load (PEM), and the key id.

Key id: ``"sha256:" + hex(SHA-256(raw 32-byte Ed25519 public key))``. It is derived from the
public key alone, so anyone holding the public half computes the same id (no registry to ask),
and two keys never share an id. A DSSE signature names its signer by this id (``keyid``), but
the id is only a hint for picking the key: verification always checks the signature itself.

Private keys are PKCS#8 PEM, optionally encrypted with a passphrase (the best encryption
`cryptography` offers); public keys are SubjectPublicKeyInfo PEM. Private halves stay on the
publisher's machine: nothing here sends them anywhere.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_ID_PREFIX = "sha256:"
ALGORITHM = "ed25519"


class InvalidKey(ValueError):
    """A key that cannot be parsed or is not Ed25519."""


def key_id(public: Ed25519PublicKey | bytes) -> str:
    """``sha256:<hex>`` of the raw public key (32 bytes)."""
    raw = public if isinstance(public, bytes) else raw_public(public)
    if len(raw) != 32:
        raise InvalidKey("an Ed25519 public key is 32 bytes")
    return KEY_ID_PREFIX + hashlib.sha256(raw).hexdigest()


def raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class PublicKey:
    """A verifying key: the Ed25519 public half and its id."""

    key: Ed25519PublicKey

    @property
    def keyid(self) -> str:
        return key_id(self.key)

    @property
    def raw(self) -> bytes:
        return raw_public(self.key)

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self.key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def to_pem(self) -> str:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def to_base64(self) -> str:
        """The raw 32 bytes in standard base64 (how events carry public keys)."""
        return base64.b64encode(self.raw).decode()

    @classmethod
    def from_raw(cls, raw: bytes) -> PublicKey:
        if len(raw) != 32:
            raise InvalidKey("an Ed25519 public key is 32 bytes")
        return cls(Ed25519PublicKey.from_public_bytes(raw))

    @classmethod
    def from_base64(cls, text: str) -> PublicKey:
        try:
            raw = base64.b64decode(text, validate=True)
        except ValueError as exc:
            raise InvalidKey("not base64") from exc
        return cls.from_raw(raw)

    @classmethod
    def from_pem(cls, pem: str | bytes) -> PublicKey:
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise InvalidKey("not a PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise InvalidKey("only Ed25519 keys are accepted")
        return cls(key)


@dataclass(frozen=True)
class SigningKey:
    """A signing key: the Ed25519 private half (its public half and id derive from it)."""

    key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """From the 32-byte RFC 8032 seed (test vectors)."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.key.public_key())

    @property
    def keyid(self) -> str:
        return self.public.keyid

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)

    def to_pem(self, passphrase: bytes | None = None) -> str:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        ).decode()

    @classmethod
    def from_pem(cls, pem: str | bytes, passphrase: bytes | None = None) -> SigningKey:
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=passphrase)
        except (ValueError, TypeError) as exc:
            raise InvalidKey(f"cannot load the private key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidKey("only Ed25519 keys are accepted")
        return cls(key)

    def save(self, path: Path, passphrase: bytes | None = None) -> Path:
        """Write the private key (mode 0600) and its public half beside it (``<path>.pub``)."""
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(self.to_pem(passphrase))
        public = path.with_name(path.name + ".pub")
        public.write_text(self.public.to_pem())
        return public

    @classmethod
    def load(cls, path: Path, passphrase: bytes | None = None) -> SigningKey:
        return cls.from_pem(path.read_bytes(), passphrase)


def load_public(path: Path) -> PublicKey:
    return PublicKey.from_pem(path.read_bytes())
