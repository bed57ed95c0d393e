"""Request and response bodies of registry's routes (msgspec Structs). A release (a version
with its bundle, statements, signers, channels and policy) is answered as the same document
registry.release.v1 events carry (gpucloud_contracts.events.registry.ReleaseChanged)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

from gpucloud_contracts.events.registry import KeyChanged

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
Text = Annotated[str, msgspec.Meta(max_length=1000)]


class AppCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    description: Text = ""


class AppOut(msgspec.Struct):
    id: uuid.UUID
    tenant_id: uuid.UUID
    project_id: uuid.UUID
    name: str
    description: str
    created_by: str
    created_at: dt.datetime


class AppPage(msgspec.Struct):
    items: list[AppOut]
    next_after: str | None = None


class BlobOut(msgspec.Struct):
    digest: str
    size: int
    created: bool


class VersionPublish(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[str, msgspec.Meta(min_length=5, max_length=128)]
    # The exact bytes of the OCI image manifest, standard base64 (their sha256 is the bundle
    # digest the release statements name).
    manifest: Annotated[str, msgspec.Meta(min_length=4, max_length=6_000_000)]


class VersionSummary(msgspec.Struct):
    id: uuid.UUID
    version: str
    manifest_digest: str
    channels: list[str]
    yanked: bool
    published_by: str
    published_at: dt.datetime


class VersionPage(msgspec.Struct):
    items: list[VersionSummary]


class StatementAttach(msgspec.Struct, forbid_unknown_fields=True):
    # The DSSE JSON envelope of an in-toto statement, as a string (kept byte for byte).
    envelope: Annotated[str, msgspec.Meta(min_length=2, max_length=524_288)]


class PromotionCreate(msgspec.Struct, forbid_unknown_fields=True):
    channel: Literal["dev", "staging", "stable"]


class YankCreate(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    # PEM (SubjectPublicKeyInfo) or the raw 32-byte Ed25519 key in base64.
    public_key: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    # When the tenant's trust in the key ends (omitted: never); renewed with .../renew.
    expires_at: Annotated[dt.datetime, msgspec.Meta(tz=True)] | None = None


class KeyRotate(msgspec.Struct, forbid_unknown_fields=True):
    successor_public_key: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    # The successor's trust expiry (omitted: never).
    expires_at: Annotated[dt.datetime, msgspec.Meta(tz=True)] | None = None


class KeyRenew(msgspec.Struct, forbid_unknown_fields=True):
    # The new end of the tenant's trust in the key, in the future; null: it never expires.
    expires_at: Annotated[dt.datetime, msgspec.Meta(tz=True)] | None


class KeyRevoke(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class KeyList(msgspec.Struct):
    items: list[KeyChanged]


class KeyRotation(msgspec.Struct):
    rotated: KeyChanged
    successor: KeyChanged


class PolicyIn(msgspec.Struct, forbid_unknown_fields=True):
    threshold: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1
    required_key_ids: Annotated[list[str], msgspec.Meta(max_length=16)] = []
    required_evidence: Annotated[list[str], msgspec.Meta(max_length=16)] = []


class PolicyOut(msgspec.Struct):
    channel: str
    threshold: int
    required_key_ids: list[str]
    required_evidence: list[str]
    # False: no policy is set for the channel and its default applies (one trusted signer).
    configured: bool


class PolicyList(msgspec.Struct):
    items: list[PolicyOut]


class WitnessedCheckpoint(msgspec.Struct):
    origin: str
    size: int
    root: str
    """Base64 RFC 6962 root hash."""
    note: str
    """The checkpoint as audit signed it (C2SP signed note)."""
    witnessed_at: dt.datetime


class WitnessConflict(msgspec.Struct):
    id: int
    origin: str
    size: int | None
    note: str
    kind: str
    """Why registry refused it: key_changed, bad_signature, fork, tree_shrank, ..."""
    detail: str
    seen_at: dt.datetime


class WitnessConflictList(msgspec.Struct):
    items: list[WitnessConflict]
