"""registry as a witness of the audit log (issue 15: "audit cannot present a forked history
to different readers undetected").

audit publishes every checkpoint it signs on `audit.checkpoint.v1` with the consistency
proof from its previous checkpoint and the key that signed it. registry keeps each one it
can verify (`witnessed_checkpoints`) and refuses, as evidence in `witness_conflicts`, any
that contradicts what it holds:

- `key_changed`: signed under another key than the first one registry saw for the log (or
  the one configured, GPUCLOUD_REGISTRY_AUDIT_LOG_KEY);
- `bad_signature` / `malformed_checkpoint` / `wrong_origin`: the note does not open;
- `fork`: another root for a tree size registry holds, or a consistency proof from the
  previous checkpoint (or to a later one already held: events of different sizes travel on
  different partitions and may arrive out of order) that fails;
- `tree_shrank`: the previous size named is larger than the checkpoint's.

A checkpoint whose predecessor registry has not seen is kept (it is still signed); it is
linked when the predecessor arrives. `GET /v1/registry/witness/checkpoint` serves the
largest one, and `gpucloud audit verify` checks that audit's latest extends it (or is
extended by it): a tenant shown a history registry never saw is told so.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from gpucloud_contracts.events.audit import CheckpointCreated
from gpucloud_trust.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from gpucloud_trust.note import NoteError, Verifier
from gpucloud_trust.verify import Finding, check_extends
from platformkit.consumers import Handler
from platformkit.db import UnitOfWork
from platformkit.envelope import CloudEvent
from registry.store import repository as repo


def _proof(values: list[str] | None) -> list[bytes]:
    return [base64.b64decode(v, validate=True) for v in values or []]


def _open(note: str, key: str, origin: str) -> Checkpoint:
    return open_checkpoint(note.encode(), [Verifier.from_vkey(key)], origin)


def witness_handler(configured_key: str | None = None) -> Handler:
    async def witness(event: CloudEvent, uow: UnitOfWork) -> None:
        created = msgspec.json.decode(event.data, type=CheckpointCreated)
        if not (created.note and created.origin and created.log_key):
            return  # a checkpoint from before audit published its note and key
        await witness_checkpoint(uow, created, configured_key)

    return witness


async def witness_checkpoint(
    uow: UnitOfWork, created: CheckpointCreated, configured_key: str | None
) -> str | None:
    """Keep the checkpoint, or record why it is refused; returns the refusal's kind."""
    origin, note, key = created.origin or "", created.note or "", created.log_key or ""

    async def refuse(kind: str, detail: str, size: int | None = None) -> str:
        await repo.add_witness_conflict(
            uow, origin=origin, size=size, note=note, kind=kind, detail=detail
        )
        return kind

    pinned_key = configured_key or await repo.witness_key(uow, origin)
    if pinned_key is not None and key != pinned_key:
        return await refuse("key_changed", f"signed by {key!r}, the log's key is {pinned_key!r}")
    try:
        checkpoint = _open(note, key, origin)
    except (NoteError, CheckpointError, ValueError) as exc:
        return await refuse("bad_signature", f"the note does not open: {exc}")
    size = checkpoint.size
    held = await repo.witnessed(uow, origin, size)
    if held is not None:
        if bytes(held["root"]) != checkpoint.root:
            return await refuse("fork", f"another root for tree size {size}", size)
        return None  # seen before (a redelivery, or audit re-announcing it)
    try:
        proof = _proof(created.consistency_proof)
    except ValueError as exc:
        return await refuse("malformed_checkpoint", f"consistency proof: {exc}", size)
    findings: list[Finding | None] = []
    if created.previous_size is not None:
        previous = await repo.witnessed(uow, origin, created.previous_size)
        if previous is not None:
            findings.append(check_extends(_open(previous["note"], key, origin), checkpoint, proof))
        elif created.previous_size > size:
            return await refuse("tree_shrank", f"previous size {created.previous_size}", size)
    for later in await repo.witnessed_successors(uow, origin, size):
        following = _open(later["note"], later["log_key"], origin)
        findings.append(check_extends(checkpoint, following, _proof(list(later["proof"]))))
    for finding in findings:
        if finding is not None:
            return await refuse(str(finding.kind), finding.detail, size)
    await repo.add_witnessed(
        uow,
        origin=origin,
        size=size,
        root=checkpoint.root,
        note=note,
        log_key=key,
        previous_size=created.previous_size,
        proof=created.consistency_proof or [],
    )
    return None


async def latest(uow: UnitOfWork, origin: str | None) -> Any:
    return await repo.latest_witnessed(uow, origin)


async def conflicts(uow: UnitOfWork, limit: int) -> list[Any]:
    return await repo.witness_conflicts(uow, limit)
