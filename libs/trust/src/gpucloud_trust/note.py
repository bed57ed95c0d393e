"""C2SP signed notes (https://c2sp.org/signed-note), byte-compatible with
golang.org/x/mod/sumdb/note, Ed25519 keys only.

A signed note is a text ending in a newline, a blank line, and one or more signature lines
``"— <key name> <base64(key ID || signature)>\\n"`` (em dash U+2014, space). The whole note
is valid UTF-8 without control characters other than newline; the text is everything up to
and including the newline before the *last* blank line. The key ID is
``SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]`` read big-endian; the
signature is Ed25519 (RFC 8032) over the text.

Keys travel as strings, as in the Go package:

- verifier key (public): ``<name>+<key ID, 8 hex digits>+<base64(0x01 || public key)>``;
- signer key (secret): ``PRIVATE+KEY+<name>+<key ID>+<base64(0x01 || 32-byte seed)>``.

`open_note` keeps the spec's rules: a signature by an unknown key (name and ID not both
known) is kept aside as unverified, a known key's bad signature rejects the whole note, a
note without one verified signature is rejected, identical repeats are dropped, and more
than 100 signature lines make a note malformed.
"""

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALG_ED25519 = 0x01
MAX_SIGNATURES = 100
SIGNATURE_PREFIX = "— "  # U+2014 EM DASH, U+0020 SPACE
_SIGNATURE_PREFIX_BYTES = SIGNATURE_PREFIX.encode()
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_HEX8 = re.compile(r"[0-9A-Fa-f]{8}")
# Unicode White_Space (what Go's unicode.IsSpace accepts): not allowed in key names.
_WHITE_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)


class NoteError(ValueError):
    """A note or key that cannot be accepted."""


class MalformedNote(NoteError):
    """Not a well-formed signed note."""


class MalformedKey(NoteError):
    """A verifier or signer key string that does not parse, or whose key ID is wrong."""


class BadSignature(NoteError):
    """A signature by a known key that does not verify: the whole note is rejected."""


class AmbiguousKey(NoteError):
    """Two known keys share a name and key ID."""


class UnverifiedNote(NoteError):
    """A well-formed note with no signature by a known key; the parsed note is attached."""

    def __init__(self, note: "Note") -> None:
        super().__init__("note has no verifiable signatures")
        self.note = note


def valid_key_name(name: str) -> bool:
    """Non-empty, valid UTF-8, no Unicode space and no ``+``."""
    if not name or "+" in name or any(c in _WHITE_SPACE for c in name):
        return False
    try:
        name.encode()
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def key_id(name: str, encoded_public_key: bytes) -> int:
    """``SHA-256(name || 0x0A || encoded key)[:4]`` big-endian; the encoded key starts with
    its signature type byte (0x01 for Ed25519)."""
    digest = hashlib.sha256(name.encode() + b"\n" + encoded_public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise ValueError("not standard base64") from e


def _split_key(text: str, what: str) -> tuple[str, int, bytes]:
    """``<name>+<8 hex digits>+<base64>``: the name, the key ID and the decoded key."""
    name, _, rest = text.partition("+")
    hex_id, _, encoded = rest.partition("+")
    try:
        key = _b64decode(encoded)
    except ValueError:
        raise MalformedKey(f"{what} is not <name>+<hash>+<base64 key>") from None
    if not _HEX8.fullmatch(hex_id) or not valid_key_name(name) or not key:
        raise MalformedKey(f"{what} is not <name>+<hash>+<base64 key>")
    return name, int(hex_id, 16), key


def _require_ed25519(key: bytes, what: str) -> None:
    if key[0] != ALG_ED25519 or len(key) != 33:
        raise MalformedKey(f"{what} is not an Ed25519 key")


@dataclass(frozen=True, slots=True)
class Verifier:
    """One Ed25519 public key with its name and key ID."""

    name: str
    key_id: int
    public_key: bytes

    def __post_init__(self) -> None:
        if not valid_key_name(self.name) or len(self.public_key) != 32:
            raise MalformedKey("key name or Ed25519 public key is invalid")
        if key_id(self.name, bytes([ALG_ED25519]) + self.public_key) != self.key_id:
            raise MalformedKey(f"key ID does not match the key {self.name}")

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes | Ed25519PublicKey) -> "Verifier":
        if isinstance(public_key, Ed25519PublicKey):
            public_key = public_key.public_bytes_raw()
        if not valid_key_name(name) or len(public_key) != 32:
            raise MalformedKey("key name or Ed25519 public key is invalid")
        return cls(name, key_id(name, bytes([ALG_ED25519]) + public_key), public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> "Verifier":
        """Parse ``<name>+<hex key ID>+<base64(0x01 || key)>``."""
        name, ident, key = _split_key(vkey, "verifier key")
        if ident != key_id(name, key):
            raise MalformedKey(f"verifier key hash does not match the key {name}")
        _require_ed25519(key, "verifier key")
        return cls(name, ident, key[1:])

    @property
    def vkey(self) -> str:
        encoded = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


class Signer:
    """One Ed25519 private key with its name and key ID. Its repr never shows the key."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._verifier = Verifier.from_public_key(name, private_key.public_key())

    @classmethod
    def generate(cls, name: str) -> "Signer":
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_skey(cls, skey: str) -> "Signer":
        """Parse ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``."""
        if not skey.startswith(_PRIVATE_PREFIX):
            raise MalformedKey("signer key does not start with PRIVATE+KEY+")
        name, ident, key = _split_key(skey[len(_PRIVATE_PREFIX) :], "signer key")
        _require_ed25519(key, "signer key")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(key[1:]))
        if signer.key_id != ident:  # the ID hashes the public key: check it once derived
            raise MalformedKey(f"signer key hash does not match the key {name}")
        return signer

    @property
    def name(self) -> str:
        return self._verifier.name

    @property
    def key_id(self) -> int:
        return self._verifier.key_id

    @property
    def verifier(self) -> Verifier:
        return self._verifier

    def encoded_private_key(self) -> str:
        """The secret ``PRIVATE+KEY+...`` string, for a secret store; never log it."""
        seed = self._key.private_bytes_raw()
        encoded = base64.b64encode(bytes([ALG_ED25519]) + seed).decode()
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id:08x}+{encoded}"

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"Signer({self.name!r}, key_id={self.key_id:08x})"


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line: key name, key ID and the raw signature bytes."""

    name: str
    key_id: int
    signature: bytes

    @property
    def line(self) -> str:
        encoded = base64.b64encode(self.key_id.to_bytes(4, "big") + self.signature).decode()
        return f"{SIGNATURE_PREFIX}{self.name} {encoded}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A note's text and its signatures: verified by a known key, or by an unknown one."""

    text: str
    signatures: tuple[Signature, ...]
    unverified: tuple[Signature, ...] = ()

    def signed_by(self, name: str) -> bool:
        return any(s.name == name for s in self.signatures)


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise MalformedNote("note text must end with a newline")
    if any(c < " " and c != "\n" for c in text):
        raise MalformedNote("note text contains a control character")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise MalformedNote("note text is not valid UTF-8") from None


def sign_note(text: str, *signers: Signer, keep: Sequence[Signature] = ()) -> bytes:
    """The signed note: ``text``, a blank line, the signatures in ``keep`` not replaced by a
    signer of the same key, then one line per signer."""
    _check_text(text)
    if not signers and not keep:
        raise MalformedNote("a signed note needs at least one signature")
    if not all(valid_key_name(s.name) and len(s.signature) for s in keep):
        raise MalformedNote("a kept signature has a bad key name or no signature")
    message = text.encode()
    replaced = {(s.name, s.key_id) for s in signers}
    lines = [s.line for s in keep if (s.name, s.key_id) not in replaced]
    lines += [Signature(s.name, s.key_id, s.sign(message)).line for s in signers]
    return message + b"\n" + "".join(lines).encode()


def open_note(message: bytes, verifiers: Iterable[Verifier]) -> Note:
    """Parse ``message`` and verify its signatures against the known ``verifiers``; raise
    `MalformedNote`, `BadSignature`, `AmbiguousKey` or `UnverifiedNote` (see module doc)."""
    try:
        decoded = message.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedNote("note is not valid UTF-8") from None
    if any(c < " " and c != "\n" for c in decoded):
        raise MalformedNote("note contains a control character")
    split = message.rfind(b"\n\n")
    if split < 0:
        raise MalformedNote("note has no blank line before its signatures")
    text, block = message[: split + 1], message[split + 2 :]
    if not block or not block.endswith(b"\n"):
        raise MalformedNote("note's signature block is empty or unterminated")
    known: dict[tuple[str, int], list[Verifier]] = {}
    for v in verifiers:
        known.setdefault((v.name, v.key_id), []).append(v)
    verified: list[Signature] = []
    unverified: list[Signature] = []
    seen_lines: set[bytes] = set()
    seen_keys: set[tuple[str, int]] = set()
    lines = block[:-1].split(b"\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"note has more than {MAX_SIGNATURES} signatures")
    for line in lines:
        signature = _parse_signature_line(line)
        ident = (signature.name, signature.key_id)
        candidates = known.get(ident)
        if candidates is None:
            if line not in seen_lines:
                seen_lines.add(line)
                unverified.append(signature)
            continue
        if len(candidates) > 1:
            raise AmbiguousKey(f"ambiguous key {signature.name}+{signature.key_id:08x}")
        if ident in seen_keys:
            continue
        seen_keys.add(ident)
        if not candidates[0].verify(text, signature.signature):
            raise BadSignature(f"invalid signature for key {signature.name}+{ident[1]:08x}")
        verified.append(signature)
    note = Note(text.decode(), tuple(verified), tuple(unverified))
    if not verified:
        raise UnverifiedNote(note)
    return note


def _parse_signature_line(line: bytes) -> Signature:
    if not line.startswith(_SIGNATURE_PREFIX_BYTES):
        raise MalformedNote("signature line does not start with an em dash and a space")
    name, _, encoded = line[len(_SIGNATURE_PREFIX_BYTES) :].decode().partition(" ")
    try:
        raw = _b64decode(encoded)
    except ValueError:
        raise MalformedNote("signature is not base64") from None
    if not valid_key_name(name) or not encoded or len(raw) < 5:
        raise MalformedNote("signature line has a bad key name or a short signature")
    return Signature(name, int.from_bytes(raw[:4], "big"), raw[4:])
