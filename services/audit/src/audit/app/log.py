"""The Merkle audit log's use cases: appending batches of events, signing checkpoints,
proofs and reads. Hashes, proofs and signatures all come from gpucloud_trust; this module
only moves their inputs and outputs in and out of PostgreSQL (store/log.py).

One writer at a time: every append and every checkpoint takes the log's advisory lock in
its transaction, then compares the stored tree size with the state it caches (the partial
tile of each level, gpucloud_trust.tiles.TreeState); another writer or a rolled-back batch
makes it reload that state from the tiles. The cache changes only after a commit.
"""

import base64
import dataclasses
import datetime as dt
import json
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.domain.recording import RULES, SourceEvent, tenant_of, to_record, trace_id_of
from audit.store.log import LogRepository
from gpucloud_contracts.events.audit import CheckpointCreated
from gpucloud_trust import tiles
from gpucloud_trust.checkpoint import Checkpoint
from gpucloud_trust.merkle import EMPTY_ROOT, leaf_hash
from gpucloud_trust.note import Signer, Verifier
from gpucloud_trust.records import AuditRecord, decode_record, encode_record
from platformkit.db import Database, UnitOfWork
from platformkit.envelope import CloudEvent
from platformkit.ids import uuid7
from platformkit.outbox import EventPublisher

log = logging.getLogger(__name__)
EVENTS = EventPublisher("audit")
Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass(frozen=True)
class LogConfig:
    origin: str = "audit.gpucloud.local/fleet"
    checkpoint_every: int = 1000
    checkpoint_interval_s: float = 5.0
    signing_key: str | None = dataclasses.field(default=None, repr=False)
    key_passphrase: str | None = dataclasses.field(default=None, repr=False)
    prune_interval_s: float = 3600.0

    @classmethod
    def from_env(cls) -> "LogConfig":
        env = os.environ.get
        return cls(
            origin=env("GPUCLOUD_AUDIT_ORIGIN", cls.origin),
            checkpoint_every=int(env("GPUCLOUD_AUDIT_CHECKPOINT_EVERY", str(cls.checkpoint_every))),
            checkpoint_interval_s=float(
                env("GPUCLOUD_AUDIT_CHECKPOINT_INTERVAL_S", str(cls.checkpoint_interval_s))
            ),
            signing_key=env("GPUCLOUD_AUDIT_SIGNING_KEY") or None,
            key_passphrase=env("GPUCLOUD_AUDIT_KEY_PASSPHRASE") or None,
            prune_interval_s=float(
                env("GPUCLOUD_AUDIT_PRUNE_INTERVAL_S", str(cls.prune_interval_s))
            ),
        )


@dataclasses.dataclass(frozen=True)
class Sealed:
    size: int
    root: bytes
    note: str


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


def source_event(event: CloudEvent) -> SourceEvent:
    try:
        payload = json.loads(event.data) if event.data else {}
    except ValueError:
        payload = {}
    return SourceEvent(
        id=str(event.id),
        type=event.type,
        source=event.source,
        subject=event.subject,
        time=event.time,
        payload=payload if isinstance(payload, dict) else {},
        tenant=event.tenant,
        trace_id=trace_id_of(event.traceparent),
        actor=event.actor,
        actor_kind=event.actor_kind,
        client_address=event.client_address,
    )


class AuditLog:
    def __init__(self, config: LogConfig, clock: Clock = utcnow) -> None:
        self.config = config
        self.clock = clock
        self._state: tiles.TreeState | None = None
        self._tenant_seqs: dict[str, int] = {}
        self._signer: Signer | None = None

    # -- the signing key ---------------------------------------------------------------

    async def signer(self, uow: UnitOfWork) -> Signer:
        """audit's checkpoint key: GPUCLOUD_AUDIT_SIGNING_KEY (a Secret) if set, else the
        stored one (created at first use, PKCS#8 encrypted under the passphrase if any)."""
        if self._signer is not None:
            return self._signer
        if self.config.signing_key:
            signer = Signer.from_skey(self.config.signing_key)
            if signer.name != self.config.origin:
                raise ValueError("GPUCLOUD_AUDIT_SIGNING_KEY must be named after the log origin")
            self._signer = signer
            return signer
        repo = LogRepository(uow)
        password = self.config.key_passphrase.encode() if self.config.key_passphrase else None
        row = await repo.signing_key(self.config.origin)
        if row is None:
            key = Ed25519PrivateKey.generate()
            encryption = (
                serialization.BestAvailableEncryption(password)
                if password
                else serialization.NoEncryption()
            )
            pkcs8 = key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, encryption
            )
            vkey = Signer(self.config.origin, key).verifier.vkey
            await repo.add_signing_key(
                self.config.origin, vkey, pkcs8, bool(password), self.clock()
            )
            row = await repo.signing_key(self.config.origin)
        key = serialization.load_der_private_key(
            bytes(row["pkcs8"]), password if row["encrypted"] else None
        )
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the stored audit signing key is not Ed25519")
        self._signer = Signer(self.config.origin, key)
        return self._signer

    async def verifier(self, db: Database) -> Verifier:
        async with db.unit_of_work() as uow:
            return (await self.signer(uow)).verifier

    # -- appending ---------------------------------------------------------------------

    async def _current(self, repo: LogRepository) -> tiles.TreeState:
        head = await repo.tree_head()
        size = head["size"] if head else 0
        if self._state is None or self._state.size != size:
            stored = await repo.read_tiles(tiles.state_tiles(size))
            self._state = tiles.TreeState.from_tiles(size, stored)
            self._tenant_seqs = {}
        return self._state

    async def append_events(self, events: Sequence[CloudEvent], uow: UnitOfWork) -> int:
        """The batch handler (platformkit BatchSubscription): every privileged action among
        `events` becomes one leaf, once per event id, in this one transaction."""
        return await self.append(uow, [source_event(e) for e in events])

    async def append(self, uow: UnitOfWork, events: Sequence[SourceEvent]) -> int:
        repo = LogRepository(uow)
        await repo.lock()
        state = await self._current(repo)
        if state.size == 0:
            legacy = await self._legacy(repo)
            events = [*legacy, *events]
        # Privileged actions only, once per event id (in the batch, then in the log); each
        # record is built once, with its tenant_seq (record validation is most of its cost).
        recorded: dict[str, SourceEvent] = {}
        for event in events:
            if event.type in RULES and event.id not in recorded:
                recorded[event.id] = event
        if recorded:
            already = {str(i) for i in await repo.seen([uuid.UUID(i) for i in recorded])}
            for event_id in already:
                recorded.pop(event_id, None)
        if not recorded:
            return 0
        seqs = dict(self._tenant_seqs)
        tenants = {event_id: tenant_of(e) for event_id, e in recorded.items()}
        missing = sorted({t for t in tenants.values() if t and t not in seqs})
        if missing:
            seqs.update(await repo.tenant_seqs(missing))
        records: list[AuditRecord] = []
        for event_id, event in recorded.items():
            tenant = tenants[event_id]
            seq = None
            if tenant:
                seq = seqs[tenant] = seqs.get(tenant, 0) + 1
            record = to_record(event, seq)
            assert record is not None  # its type has a rule
            records.append(record)
        columns: dict[str, list[Any]] = {
            k: []
            for k in (
                "idx",
                "event_id",
                "tenant",
                "tenant_seq",
                "actor",
                "action",
                "target_kind",
                "target_id",
                "occurred_at",
                "leaf",
            )
        }
        hashes = bytearray()
        for offset, record in enumerate(records):
            tenant = record.tenant
            seq = record.details.get("tenant_seq")
            leaf = encode_record(record)
            hashes += leaf_hash(leaf)
            columns["idx"].append(state.size + offset)
            columns["event_id"].append(uuid.UUID(record.event_id))
            columns["tenant"].append(tenant)
            columns["tenant_seq"].append(seq)
            columns["actor"].append(record.actor.subject)
            columns["action"].append(record.action)
            columns["target_kind"].append(record.target.kind)
            columns["target_id"].append(record.target.id)
            columns["occurred_at"].append(record.time)
            columns["leaf"].append(leaf)
        appended = tiles.append(state, bytes(hashes))
        new = appended.state
        root = new.root()
        now = self.clock()
        await repo.append(
            columns,
            [(t.level, t.index, t.width, t.hashes) for t in appended.tiles],
            new.size,
            root,
            now,
        )
        last = await repo.latest_checkpoint()
        if new.size - (last["size"] if last else 0) >= self.config.checkpoint_every:
            await self._seal(uow, repo, new.size, root, last, now)

        def committed() -> None:
            self._state = new
            self._tenant_seqs = seqs

        uow.after_commit(committed)
        return len(records)

    async def _legacy(self, repo: LogRepository) -> list[SourceEvent]:
        """The hash-chained records of the log before the tree (migration 0001) become its
        first leaves, in chain order, each naming its chain position and hash."""
        rows = await repo.legacy_records()
        return [
            SourceEvent(
                id=str(r["event_id"]),
                type=r["event_type"],
                source=r["source"],
                subject=r["subject"],
                time=r["occurred_at"],
                payload={**r["payload"], "legacy_seq": r["seq"], "legacy_hash": r["hash"]},
                tenant=r["tenant"],
                trace_id=r["trace_id"],
            )
            for r in rows
        ]

    # -- checkpoints -------------------------------------------------------------------

    async def _seal(
        self,
        uow: UnitOfWork,
        repo: LogRepository,
        size: int,
        root: bytes,
        last: Any,
        now: dt.datetime,
    ) -> Sealed:
        signer = await self.signer(uow)
        note = Checkpoint(self.config.origin, size, root, now).sign(signer).decode()
        previous = last["size"] if last else 0
        proof = await self._consistency(repo, previous, size) if last and previous else []
        await repo.add_checkpoint(size, root, now, note)
        await EVENTS.add_event(
            uow,
            "audit.checkpoint.created",
            subject=f"{self.config.origin}/{size}",
            payload=CheckpointCreated(
                checkpoint_id=uuid7(),
                sequence=size,
                head_hash=root.hex(),
                created_at=now,
                origin=self.config.origin,
                note=note,
                previous_size=previous if last else None,
                consistency_proof=[_b64(h) for h in proof],
                log_key=signer.verifier.vkey,
            ),
        )
        return Sealed(size, root, note)

    async def checkpoint(self, db: Database) -> Sealed | None:
        """Sign the tree if it grew since the last checkpoint (or was never signed): the
        periodic job, every T seconds. None when there is nothing new to sign."""
        async with db.unit_of_work() as uow:
            repo = LogRepository(uow)
            await repo.lock()
            state = await self._current(repo)
            last = await repo.latest_checkpoint()
            if last is not None and last["size"] >= state.size:
                return None
            root = state.root() if state.size else EMPTY_ROOT
            sealed = await self._seal(uow, repo, state.size, root, last, self.clock())
            await uow.commit()
            return sealed

    # -- proofs ------------------------------------------------------------------------

    async def _consistency(self, repo: LogRepository, old: int, new: int) -> list[bytes]:
        plan = tiles.consistency_plan(old, new)
        return plan.assemble(await repo.read_tiles(plan.tiles()))

    async def inclusion_proofs(
        self, repo: LogRepository, indices: Sequence[int], size: int
    ) -> dict[int, list[bytes]]:
        """Inclusion proofs of several leaves in the tree of `size`, from one tile read."""
        plans = {i: tiles.inclusion_plan(i, size) for i in indices}
        keys: set[tuple[int, int]] = set()
        for plan in plans.values():
            keys.update(plan.tiles())
        stored = await repo.read_tiles(keys)
        return {i: plan.assemble(stored) for i, plan in plans.items()}


def record_json(leaf: bytes) -> dict[str, Any]:
    return decode_record(leaf).to_json()
