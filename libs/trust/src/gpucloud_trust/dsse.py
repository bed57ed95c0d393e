"""DSSE (Dead Simple Signing Envelope) v1: the envelope, its pre-authentication encoding, and
signing and verification with a threshold of distinct trusted keys.

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

LEN is the ASCII decimal byte length (of UTF8(type), and of body). A signature covers the PAE,
never the bare payload, so a payload cannot be re-labelled with another type. The JSON envelope
is ``{"payloadType", "payload": base64, "signatures": [{"keyid", "sig": base64}]}``; either
base64 alphabet (standard or URL-safe) is accepted on input, standard is written.

Verification (the spec's (t, n) rule): every signature is checked against the trusted keys
(the ``keyid`` hint narrows the search first, but a missing or unknown keyid still tries every
key), each trusted key counts once however many times it signed, and the envelope is accepted
only when at least ``threshold`` distinct trusted keys signed and its payload type is one the
caller supports.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpucloud_trust.keys import PublicKey, SigningKey

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


class InvalidEnvelope(ValueError):
    """An envelope that cannot be decoded."""


class VerificationFailed(ValueError):
    """A well-formed envelope that does not verify (type, signatures, threshold)."""


def pae(payload_type: str, body: bytes) -> bytes:
    """The DSSEv1 pre-authentication encoding of (type, body)."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(body), body)


def b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not (DSSE: verifiers accept either)."""
    if not isinstance(text, str):
        raise InvalidEnvelope("base64 fields are strings")
    cleaned = text.strip()
    padded = cleaned + "=" * (-len(cleaned) % 4)
    alphabet = padded.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(alphabet, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidEnvelope(f"not base64: {exc}") from exc


@dataclass(frozen=True)
class Signature:
    sig: bytes
    keyid: str = ""


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode(),
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode()}
                if s.keyid
                else {"sig": base64.b64encode(s.sig).decode()}
                for s in self.signatures
            ],
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Envelope:
        if not isinstance(data, Mapping):
            raise InvalidEnvelope("an envelope is a JSON object")
        payload_type = data.get("payloadType")
        if not isinstance(payload_type, str):
            raise InvalidEnvelope("payloadType is required (a string)")
        signatures = data.get("signatures")
        if not isinstance(signatures, list):
            raise InvalidEnvelope("signatures is required (a list)")
        parsed = []
        for i, item in enumerate(signatures):
            if not isinstance(item, Mapping) or "sig" not in item:
                raise InvalidEnvelope(f"signatures[{i}] needs a sig")
            keyid = item.get("keyid", "") or ""
            if not isinstance(keyid, str):
                raise InvalidEnvelope(f"signatures[{i}].keyid is a string")
            parsed.append(Signature(b64decode(item["sig"]), keyid))
        return cls(payload_type, b64decode(data.get("payload", "")), tuple(parsed))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Envelope:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidEnvelope(f"not JSON: {exc}") from exc
        return cls.from_dict(data)


def sign(payload_type: str, payload: bytes, signers: Iterable[SigningKey]) -> Envelope:
    """An envelope over (type, payload) with one signature per signer."""
    message = pae(payload_type, payload)
    return Envelope(
        payload_type,
        payload,
        tuple(Signature(s.sign(message), s.keyid) for s in signers),
    )


def add_signature(envelope: Envelope, signer: SigningKey) -> Envelope:
    """The same envelope with one more signature (a co-signer adds theirs)."""
    sig = Signature(signer.sign(pae(envelope.payload_type, envelope.payload)), signer.keyid)
    return Envelope(envelope.payload_type, envelope.payload, (*envelope.signatures, sig))


@dataclass(frozen=True)
class Verified:
    """What a verification established: the payload and which trusted keys signed it."""

    payload_type: str
    payload: bytes
    signer_keyids: tuple[str, ...]


def signers(envelope: Envelope, trusted: Sequence[PublicKey]) -> tuple[str, ...]:
    """The ids of the distinct trusted keys with a valid signature on the envelope, in the
    order of their first signature."""
    message = pae(envelope.payload_type, envelope.payload)
    by_id = {k.keyid: k for k in trusted}
    accepted: dict[str, None] = {}
    for signature in envelope.signatures:
        hinted = by_id.get(signature.keyid)
        candidates = [hinted] if hinted is not None else list(by_id.values())
        if hinted is not None:
            # the hint is unauthenticated: a miss falls back to every other key
            candidates += [k for k in by_id.values() if k is not hinted]
        for key in candidates:
            if key.keyid in accepted:
                continue
            if key.verify(signature.sig, message):
                accepted[key.keyid] = None
                break
    return tuple(accepted)


def verify(
    envelope: Envelope,
    trusted: Sequence[PublicKey],
    *,
    threshold: int = 1,
    payload_types: Iterable[str] = (IN_TOTO_PAYLOAD_TYPE,),
) -> Verified:
    """Accept the envelope if at least `threshold` distinct trusted keys signed it and its
    payload type is supported; raise VerificationFailed otherwise."""
    if threshold < 1:
        raise ValueError("a threshold is at least 1")
    accepted = signers(envelope, trusted)
    if len(accepted) < threshold:
        raise VerificationFailed(
            f"{len(accepted)} of the required {threshold} trusted signatures verify"
        )
    if envelope.payload_type not in set(payload_types):
        raise VerificationFailed(f"unsupported payload type {envelope.payload_type!r}")
    return Verified(envelope.payload_type, envelope.payload, accepted)
