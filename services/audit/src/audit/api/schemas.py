import datetime as dt
from typing import Annotated, Any, Literal

import msgspec

from gpucloud_contracts.events.audit import EvidenceRecorded


class LogKey(msgspec.Struct):
    origin: str
    vkey: str
    """The log's note verifier key (`<name>+<key id>+<base64 key>`, C2SP signed-note)."""


class CheckpointOut(msgspec.Struct):
    size: int
    root: str
    """Base64 RFC 6962 root hash."""
    signed_at: dt.datetime
    note: str
    """The signed checkpoint (C2SP signed note of a tlog-checkpoint body)."""


class ConsistencyOut(msgspec.Struct):
    first: int
    second: int
    proof: list[str]


class RecordOut(msgspec.Struct):
    index: int
    leaf: str
    """Base64 of the leaf bytes (the record's canonical JSON, RFC 8785)."""
    record: dict[str, Any]
    proof: list[str] | None = None
    """Inclusion proof (base64 hashes) in the tree of the page's checkpoint."""


class RecordPageOut(msgspec.Struct):
    items: list[RecordOut]
    checkpoint: CheckpointOut | None = None
    next_after: int | None = None


class InclusionOut(msgspec.Struct):
    index: int
    size: int
    leaf: str
    record: dict[str, Any]
    proof: list[str]


class RetentionIn(msgspec.Struct):
    days: int


class RetentionOut(msgspec.Struct):
    tenant_id: str
    days: int


class ServiceState(msgspec.Struct):
    name: str
    ready: bool
    stale: bool
    checks: dict[str, bool] | None = None
    version: str | None = None
    git_sha: str | None = None
    instance: str | None = None
    started_at: dt.datetime | None = None
    last_seen_at: dt.datetime | None = None


class StatusReport(msgspec.Struct):
    services: list[ServiceState]
    generated_at: dt.datetime


Digest = Annotated[str, msgspec.Meta(pattern=r"^sha256:[0-9a-f]{64}$")]


class EvidenceIn(msgspec.Struct, forbid_unknown_fields=True):
    """An evidence record: a check's `outcome` about `subject_digest` (docs/audit.md)."""

    kind: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9-]{0,62}$")]
    subject_digest: Digest
    outcome: Literal["pass", "fail"]
    content_digest: Digest | None = None
    uri: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)] | None = None
    details: dict[str, Any] | None = None


class EvidencePageOut(msgspec.Struct):
    items: list[EvidenceRecorded]
