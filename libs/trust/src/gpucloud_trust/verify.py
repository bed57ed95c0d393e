"""A pure verifier for a client that pins checkpoints (the `gpucloud audit verify` CLI, an
operator's check of the fleet log) and for a witness: given what the log served, report
the first inconsistency, precisely, or none.

Inputs: the log's latest signed checkpoint; the checkpoints the client pinned before
(signed notes, re-verified); a consistency proof from each pinned size to the latest; the
records served, each with its index and its inclusion proof in the latest tree; and,
optionally, the leaf hashes the client verified on earlier runs.

Checks, in this order (the first failure is the report):

1. the latest checkpoint: a signature by one of the log's keys (`BAD_SIGNATURE`), a
   well-formed body (`MALFORMED_CHECKPOINT`), this log's origin (`WRONG_ORIGIN`);
2. each pinned checkpoint, smallest first, against the latest: the tree did not shrink
   (`TREE_SHRANK`, at the first index that disappeared), and the latest tree extends the
   pinned one (`FORK`: same size with another root, or a consistency proof that fails;
   `MISSING_PROOF` when none was served). With earlier leaf hashes, a fork is located at the
   first served record that differs from what was verified before;
3. the records, in the order served: each index inside the tree (`INDEX_OUT_OF_RANGE`),
   served once (`DUPLICATE_INDEX`), in increasing order (`REORDERED`); with ``expect_from``,
   every index from there to the tree's end present (`MISSING`, or `TRUNCATED` when all the
   newest records are absent; a skipped index served later is `REORDERED`); and each
   record's leaf hash proven at its index (`TAMPERED`). A record that fails its proof is
   compared with the neighbouring served proofs (up to `DIAGNOSIS_WINDOW` records either
   side): when it is the leaf of another index and its own leaf is served elsewhere, the
   records were swapped (`REORDERED`); when its own leaf is nowhere and it is another
   index's leaf, a record was removed and the rest renumbered (`MISSING`). Recognising a
   record needs the proof of the index it belongs to among those served: a record moved
   from an index that is not served is reported as `TAMPERED` at the index it was served as.

A report is `Verified`: the latest checkpoint (pin it only when ``ok``), the first finding,
and how many records were checked. `check_extends` is step 2 alone, for a witness that
keeps the last checkpoint it saw of a log and refuses one that does not extend it.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from gpucloud_trust.checkpoint import Checkpoint, CheckpointError, WrongOrigin, open_checkpoint
from gpucloud_trust.merkle import (
    ProofError,
    leaf_hash,
    root_from_inclusion_proof,
    verify_consistency,
)
from gpucloud_trust.note import NoteError, Verifier

DIAGNOSIS_WINDOW = 64


class FindingKind(StrEnum):
    BAD_SIGNATURE = "bad_signature"
    MALFORMED_CHECKPOINT = "malformed_checkpoint"
    WRONG_ORIGIN = "wrong_origin"
    TREE_SHRANK = "tree_shrank"
    FORK = "fork"
    MISSING_PROOF = "missing_proof"
    INDEX_OUT_OF_RANGE = "index_out_of_range"
    DUPLICATE_INDEX = "duplicate_index"
    REORDERED = "reordered"
    MISSING = "missing"
    TRUNCATED = "truncated"
    TAMPERED = "tampered"


@dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    index: int | None
    """The log index the finding is about, when there is one."""
    detail: str


@dataclass(frozen=True, slots=True)
class Entry:
    """A served record: its index, its leaf bytes and its inclusion proof in the latest tree."""

    index: int
    data: bytes
    proof: Sequence[bytes]


@dataclass(frozen=True, slots=True)
class Verified:
    checkpoint: Checkpoint | None
    """The latest checkpoint, once its signature verified."""
    finding: Finding | None
    checked: int
    """Records whose inclusion proofs were verified before the first finding."""

    @property
    def ok(self) -> bool:
        return self.finding is None


def _open(note: bytes, log_keys: Sequence[Verifier], origin: str, what: str) -> Checkpoint:
    try:
        return open_checkpoint(note, log_keys, origin)
    except NoteError as e:
        raise _Stop(Finding(FindingKind.BAD_SIGNATURE, None, f"{what}: {e}")) from None
    except WrongOrigin as e:
        raise _Stop(Finding(FindingKind.WRONG_ORIGIN, None, f"{what}: {e}")) from None
    except CheckpointError as e:
        raise _Stop(Finding(FindingKind.MALFORMED_CHECKPOINT, None, f"{what}: {e}")) from None


class _Stop(Exception):
    """Carries the first finding out of the checks, with the count of records verified."""

    def __init__(self, finding: Finding, checked: int = 0) -> None:
        self.finding = finding
        self.checked = checked


def check_extends(
    pinned: Checkpoint, latest: Checkpoint, proof: Sequence[bytes] | None
) -> Finding | None:
    """Whether ``latest`` extends ``pinned`` (both already opened), given the consistency
    proof from the pinned size to the latest; ``None`` when it does."""
    if latest.size < pinned.size:
        return Finding(
            FindingKind.TREE_SHRANK,
            latest.size,
            f"the log's tree has {latest.size} leaves, {pinned.size} were pinned before",
        )
    if latest.size == pinned.size:
        if latest.root != pinned.root:
            return Finding(
                FindingKind.FORK, None, f"two different roots for tree size {pinned.size}"
            )
        return None
    if proof is None and pinned.size == 0:
        proof = []  # every tree extends the empty one
    if proof is None:
        return Finding(
            FindingKind.MISSING_PROOF,
            None,
            f"no consistency proof from pinned size {pinned.size} to {latest.size}",
        )
    try:
        verify_consistency(pinned.size, latest.size, pinned.root, latest.root, proof)
    except ProofError as e:
        return Finding(
            FindingKind.FORK,
            None,
            f"tree of size {latest.size} does not extend the pinned size {pinned.size}: {e}",
        )
    return None


def verify_log(
    *,
    latest: bytes,
    log_keys: Sequence[Verifier],
    origin: str,
    pinned: Iterable[bytes] = (),
    consistency: Mapping[int, Sequence[bytes]] | None = None,
    entries: Sequence[Entry] = (),
    expect_from: int | None = None,
    known_leaf_hashes: Mapping[int, bytes] | None = None,
) -> Verified:
    """Verify what a log served (see the module doc). ``expect_from``: the served records
    must be every record from that index to the latest tree's end (a full log, or the range
    after the last verified run); ``None`` for a sparse view such as one tenant's records in
    a fleet log, where only the records served are checked."""
    try:
        checkpoint = _open(latest, log_keys, origin, "latest checkpoint")
    except _Stop as stop:
        return Verified(None, stop.finding, 0)
    try:
        _check_pinned(
            checkpoint, pinned, log_keys, origin, consistency or {}, entries, known_leaf_hashes
        )
        checked = _check_entries(checkpoint, entries, expect_from)
    except _Stop as stop:
        return Verified(checkpoint, stop.finding, stop.checked)
    return Verified(checkpoint, None, checked)


def _check_pinned(
    latest: Checkpoint,
    pinned: Iterable[bytes],
    log_keys: Sequence[Verifier],
    origin: str,
    consistency: Mapping[int, Sequence[bytes]],
    entries: Sequence[Entry],
    known_leaf_hashes: Mapping[int, bytes] | None,
) -> None:
    opened = [_open(note, log_keys, origin, "pinned checkpoint") for note in pinned]
    for old in sorted(opened, key=lambda c: c.size):
        finding = check_extends(old, latest, consistency.get(old.size))
        if finding is None:
            continue
        if finding.kind is FindingKind.FORK and known_leaf_hashes:
            for entry in sorted(entries, key=lambda e: e.index):
                known = known_leaf_hashes.get(entry.index)
                if known is not None and known != leaf_hash(entry.data):
                    finding = Finding(
                        FindingKind.FORK,
                        entry.index,
                        f"{finding.detail}; record {entry.index} differs from the one "
                        "verified before",
                    )
                    break
        raise _Stop(finding)


def _proves(entry: Entry, data: bytes, size: int, root: bytes) -> bool:
    try:
        return root_from_inclusion_proof(entry.index, size, leaf_hash(data), entry.proof) == root
    except ProofError:
        return False


def _check_entries(latest: Checkpoint, entries: Sequence[Entry], expect_from: int | None) -> int:
    size, root = latest.size, latest.root
    positions: dict[int, int] = {}
    for position, entry in enumerate(entries):
        positions.setdefault(entry.index, position)
    expected = expect_from
    previous: int | None = None
    checked = 0

    def stop(kind: FindingKind, index: int, detail: str) -> _Stop:
        return _Stop(Finding(kind, index, detail), checked)

    for position, entry in enumerate(entries):
        i = entry.index
        if not 0 <= i < size:
            raise stop(FindingKind.INDEX_OUT_OF_RANGE, i, f"index {i} is not in a tree of {size}")
        if positions[i] != position:
            raise stop(FindingKind.DUPLICATE_INDEX, i, f"record {i} is served twice")
        if previous is not None and i < previous:
            raise stop(FindingKind.REORDERED, i, f"record {i} is served after record {previous}")
        if expected is not None and i != expected:
            if expected in positions:
                raise stop(
                    FindingKind.REORDERED, expected, f"record {expected} is served after record {i}"
                )
            raise stop(FindingKind.MISSING, expected, f"record {expected} is not served")
        if not _proves(entry, entry.data, size, root):
            raise stop(*_diagnose(entries, position, size, root))
        checked += 1
        previous = i
        if expected is not None:
            expected = i + 1
    if expected is not None and expected < size:
        raise stop(
            FindingKind.TRUNCATED,
            expected,
            f"records {expected} to {size - 1} of the signed tree are not served",
        )
    return checked


def _diagnose(
    entries: Sequence[Entry], position: int, size: int, root: bytes
) -> tuple[FindingKind, int, str]:
    """Why the record at ``position`` fails its proof: swapped, renumbered or altered."""
    entry = entries[position]
    i = entry.index
    nearby = [
        other
        for other in entries[max(0, position - DIAGNOSIS_WINDOW) : position + DIAGNOSIS_WINDOW + 1]
        if other.index != i
    ]
    is_leaf_of = next((o.index for o in nearby if _proves(o, entry.data, size, root)), None)
    own_leaf_at = next((o.index for o in nearby if _proves(entry, o.data, size, root)), None)
    if own_leaf_at is not None:
        return (FindingKind.REORDERED, i, f"record {i} is served as record {own_leaf_at}")
    if is_leaf_of is not None:
        return (
            FindingKind.MISSING,
            i,
            f"record {i} is missing: the record served as {i} is record {is_leaf_of}",
        )
    return (
        FindingKind.TAMPERED,
        i,
        f"record {i} is not the leaf the signed tree holds at index {i}",
    )
