"""`gpucloud audit verify`: a tenant's audit trail checked outside the platform.

The audit service keeps one RFC 6962 Merkle tree of every privileged action (the fleet
log) and signs a checkpoint of it (C2SP signed note, Ed25519) every few seconds
(docs/audit.md, docs/audit-log.md). The verifier here trusts nothing the gateway says
except through what it holds itself, in the config directory (`audit/<log>.json`, 0600):

- the log's verifier key, pinned on first use (or given with `--key`, out of band): a
  different key later is refused, never silently followed;
- the last checkpoint it verified: the new one must extend it (a consistency proof), so a
  log that rewrote, reordered or cut its history is caught as a fork or a shrunk tree;
- a witness: registry keeps every checkpoint audit published on Kafka
  (`GET /v1/registry/witness/checkpoint`); audit's latest must extend registry's largest,
  or be extended by it, so a history shown to this reader and not to registry is a fork;
- per tenant, the highest `tenant_seq` it has seen: each record of a tenant carries its
  place in the tenant's trail (1, 2, ...), so a gap, or a trail that ends before where it
  ended last time, is a withheld record.

Each run downloads the tenant's records below the latest checkpoint, every one with its
inclusion proof in that one tree (`size=`), and hands them with the pin to
`gpucloud_trust.verify.verify_log` (the same library the audit service hashes and signs
with). The first inconsistency is the report; the pin moves forward only when everything
verified. Pure functions here, I/O in gpucloud_cli.commands.audit.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from gpucloud_trust.checkpoint import CheckpointError, open_checkpoint
from gpucloud_trust.note import NoteError, Verifier
from gpucloud_trust.records import RecordError, decode_record
from gpucloud_trust.verify import Entry, check_extends, verify_log

PIN_DIRECTORY = "audit"


@dataclasses.dataclass
class Pin:
    """What an earlier run verified, for one log at one gateway."""

    gateway: str
    origin: str
    vkey: str
    note: str | None = None  # the last verified checkpoint (signed note)
    size: int = 0
    tenant_seq: dict[str, int] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pin:
        return cls(
            gateway=str(data["gateway"]),
            origin=str(data["origin"]),
            vkey=str(data["vkey"]),
            note=data.get("note"),
            size=int(data.get("size") or 0),
            tenant_seq={str(k): int(v) for k, v in (data.get("tenant_seq") or {}).items()},
        )


def pin_path(config_dir: Path, gateway: str) -> Path:
    """One pin file per gateway (one fleet log behind it)."""
    digest = hashlib.sha256(gateway.encode()).hexdigest()[:16]
    return config_dir / PIN_DIRECTORY / f"{digest}.json"


def load_pin(path: Path) -> Pin | None:
    try:
        return Pin.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None


@dataclasses.dataclass(frozen=True)
class Finding:
    kind: str
    index: int | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "index": self.index, "detail": self.detail}


@dataclasses.dataclass(frozen=True)
class Outcome:
    size: int
    root: str  # base64
    time: str | None
    records: int
    checked: int
    finding: Finding | None
    last_seq: int | None  # the tenant's highest tenant_seq served

    @property
    def ok(self) -> bool:
        return self.finding is None


def _b64(values: Iterable[str]) -> list[bytes]:
    return [base64.b64decode(v, validate=True) for v in values]


def verify_trail(
    *,
    vkey: str,
    origin: str,
    latest_note: str,
    pinned: Pin | None,
    consistency: list[str] | None,
    records: list[Mapping[str, Any]],
    tenant_id: str,
) -> Outcome:
    """Check a served trail against the pin; the first inconsistency is the finding."""
    try:
        keys = [Verifier.from_vkey(vkey)]
    except ValueError as exc:
        return Outcome(0, "", None, len(records), 0, Finding("bad_key", None, str(exc)), None)
    try:
        entries = [
            Entry(int(r["index"]), base64.b64decode(r["leaf"], validate=True), _b64(r["proof"]))
            for r in records
        ]
    except (KeyError, TypeError, ValueError) as exc:
        finding = Finding("malformed_answer", None, f"a record could not be read: {exc}")
        return Outcome(0, "", None, len(records), 0, finding, None)
    pinned_notes = [pinned.note.encode()] if pinned and pinned.note else []
    proofs = {pinned.size: _b64(consistency or [])} if pinned_notes and pinned else {}
    result = verify_log(
        latest=latest_note.encode(),
        log_keys=keys,
        origin=origin,
        pinned=pinned_notes,
        consistency=proofs,
        entries=entries,
        expect_from=None,  # one tenant's records in the fleet log: a sparse view
    )
    checkpoint = result.checkpoint
    size = checkpoint.size if checkpoint else 0
    root = base64.b64encode(checkpoint.root).decode() if checkpoint else ""
    at = checkpoint.time.isoformat() if checkpoint and checkpoint.time else None

    def outcome(finding: Finding | None, last_seq: int | None = None) -> Outcome:
        return Outcome(size, root, at, len(records), result.checked, finding, last_seq)

    if result.finding is not None:
        f = result.finding
        return outcome(Finding(str(f.kind), f.index, f.detail))
    finding, last_seq = _sequence(
        entries, tenant_id, pinned.tenant_seq.get(tenant_id) if pinned else None
    )
    return outcome(finding, last_seq)


def _sequence(
    entries: list[Entry], tenant_id: str, seen_before: int | None
) -> tuple[Finding | None, int | None]:
    """Every served record is the tenant's, and their `tenant_seq` leaves no gap; the trail
    reaches at least as far as an earlier run saw. Records imported from the old hash chain
    carry no sequence and are checked by their proofs only."""
    previous: int | None = None
    for entry in sorted(entries, key=lambda e: e.index):
        try:
            record = decode_record(entry.data)
        except RecordError as exc:
            return Finding("malformed_record", entry.index, str(exc)), previous
        if record.tenant != tenant_id:
            detail = f"record of tenant {record.tenant!r} served as {tenant_id}'s"
            return Finding("foreign_record", entry.index, detail), previous
        seq = (record.details or {}).get("tenant_seq")
        if not isinstance(seq, int):
            continue
        if previous is not None and seq != previous + 1:
            detail = f"tenant_seq {previous} is followed by {seq}: records were withheld"
            return Finding("withheld", entry.index, detail), previous
        previous = seq
    if seen_before is not None and (previous or 0) < seen_before:
        detail = f"the trail ends at tenant_seq {previous or 0}; an earlier run saw {seen_before}"
        return Finding("withheld", None, detail), previous
    return None, previous


def compare_witness(
    *, vkey: str, origin: str, latest_note: str, witness_note: str, proof: list[str]
) -> Finding | None:
    """audit's latest checkpoint against the witness's: the smaller of the two must be
    extended by the larger (`proof`: audit's consistency proof between their sizes)."""
    keys = [Verifier.from_vkey(vkey)]
    latest = open_checkpoint(latest_note.encode(), keys, origin)
    try:
        witnessed = open_checkpoint(witness_note.encode(), keys, origin)
    except (NoteError, CheckpointError) as exc:
        return Finding("witness_unverified", None, f"the witness's checkpoint: {exc}")
    older, newer = sorted((latest, witnessed), key=lambda c: c.size)
    found = check_extends(older, newer, _b64(proof))
    if found is None:
        return None
    detail = (
        f"audit serves tree size {latest.size}, the witness (registry) holds "
        f"{witnessed.size}: {found.detail}"
    )
    return Finding("fork", found.index, detail)
