import datetime as dt
import uuid
from typing import Any

import msgspec


class AuditRecord(msgspec.Struct):
    seq: int
    id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    source: str
    subject: str
    tenant: str | None
    trace_id: str | None
    occurred_at: dt.datetime
    recorded_at: dt.datetime
    payload: dict[str, Any]
    hash: str


class AuditPage(msgspec.Struct):
    items: list[AuditRecord]
    next_after: int | None = None


class ChainVerification(msgspec.Struct):
    records: int
    valid: bool
    first_broken_seq: int | None = None


class ServiceState(msgspec.Struct):
    name: str
    version: str
    git_sha: str
    ready: bool
    checks: dict[str, bool]
    instance: str
    started_at: dt.datetime
    last_seen_at: dt.datetime
    stale: bool


class StatusReport(msgspec.Struct):
    services: list[ServiceState]
    generated_at: dt.datetime
