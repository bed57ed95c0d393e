"""The audit hash chain: hash_n = sha256(hash_{n-1} | canonical record n). Pure."""

import hashlib
import json
from typing import Any

GENESIS = "0" * 64


def record_hash(prev_hash: str, record: dict[str, Any]) -> str:
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{prev_hash}|{canonical}".encode()).hexdigest()


def chained_fields(row: Any) -> dict[str, Any]:
    """The fields a record's hash covers, taken from a stored row or a new record."""
    return {
        "seq": row["seq"],
        "id": str(row["id"]),
        "event_id": str(row["event_id"]),
        "event_type": row["event_type"],
        "source": row["source"],
        "subject": row["subject"],
        "tenant": row["tenant"],
        "occurred_at": row["occurred_at"].isoformat(),
        "payload": row["payload"],
    }
