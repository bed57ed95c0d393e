"""registry as the audit log's witness, on real PostgreSQL: checkpoints of one honest log
are kept (in any arrival order, linked by their consistency proofs); a fork, a forged
extension and a checkpoint under another key are refused and kept as evidence; the routes
serve the largest witnessed checkpoint to any caller and the refusals to operators only."""

import base64
import datetime as dt
import uuid

import pytest

from gpucloud_contracts.events.audit import CheckpointCreated
from gpucloud_trust.checkpoint import Checkpoint
from gpucloud_trust.merkle import leaf_hash
from gpucloud_trust.note import Signer
from gpucloud_trust.tiles import TiledLog
from platformkit.db import Database
from registry.app.witness import witness_checkpoint

from .conftest import OPERATOR_TOKEN, token

pytestmark = pytest.mark.integration

ORIGIN = "audit.gpucloud.test/fleet"
KEY = Signer.generate(ORIGIN)
T0 = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)


class Log:
    def __init__(self, tag: str, count: int = 40, signer: Signer = KEY) -> None:
        self.signer = signer
        self.tree = TiledLog()
        self.tree.append([leaf_hash(f"{tag}-{i}".encode()) for i in range(count)])

    def event(self, size: int, previous: int | None) -> CheckpointCreated:
        root = self.tree.root(size)
        note = Checkpoint(ORIGIN, size, root, T0 + dt.timedelta(seconds=size)).sign(self.signer)
        proof = self.tree.consistency_proof(previous, size) if previous else []
        return CheckpointCreated(
            checkpoint_id=uuid.uuid4(),
            sequence=size,
            head_hash=root.hex(),
            created_at=T0,
            origin=ORIGIN,
            note=note.decode(),
            previous_size=previous,
            consistency_proof=[base64.b64encode(h).decode() for h in proof],
            log_key=self.signer.verifier.vkey,
        )


async def _witness(db: Database, event: CheckpointCreated, key: str | None = None):
    async with db.unit_of_work() as uow:
        refused = await witness_checkpoint(uow, event, key)
        await uow.commit()
    return refused


async def _kept(db: Database) -> list[int]:
    async with db.unit_of_work() as uow:
        rows = await uow.fetch_all("SELECT size FROM witnessed_checkpoints ORDER BY size")
    return [r["size"] for r in rows]


async def _conflicts(db: Database) -> list[tuple[str, int | None]]:
    async with db.unit_of_work() as uow:
        rows = await uow.fetch_all("SELECT kind, size FROM witness_conflicts ORDER BY id")
    return [(r["kind"], r["size"]) for r in rows]


async def test_an_honest_log_is_kept_in_any_order_and_a_fork_is_refused(registry_url) -> None:
    db = Database(registry_url)
    honest = Log("a")
    try:
        assert await _witness(db, honest.event(10, None)) is None
        assert await _witness(db, honest.event(30, 20)) is None  # ahead of its predecessor
        assert await _witness(db, honest.event(20, 10)) is None  # links 10 -> 20 -> 30
        assert await _witness(db, honest.event(20, 10)) is None  # a redelivery: no change
        assert await _kept(db) == [10, 20, 30]

        forked = Log("b")  # another history under the same key
        assert await _witness(db, forked.event(20, 10)) == "fork"  # another root for 20
        # a size-40 tree whose proof from 30 cannot hold: not an extension of what is held
        assert await _witness(db, forked.event(40, 30)) == "fork"
        # a predecessor that the held 30 does not extend
        assert await _witness(db, Log("c").event(25, None)) is None  # unlinked, kept
        other_key = Log("a", signer=Signer.generate(ORIGIN))
        assert await _witness(db, other_key.event(35, 30)) == "key_changed"
        assert await _kept(db) == [10, 20, 25, 30]
        assert await _conflicts(db) == [("fork", 20), ("fork", 40), ("key_changed", None)]
        assert await _witness(db, honest.event(40, 30)) is None  # the real extension
    finally:
        await db.dispose()


async def test_a_configured_key_is_the_only_one_accepted(registry_url) -> None:
    db = Database(registry_url)
    try:
        configured = Signer.generate(ORIGIN).verifier.vkey
        assert await _witness(db, Log("a").event(10, None), configured) == "key_changed"
        assert await _kept(db) == []
    finally:
        await db.dispose()


async def test_the_routes_serve_the_largest_checkpoint_and_refusals_to_operators(
    client, registry_url
) -> None:
    db = Database(registry_url)
    log = Log("a")
    try:
        for size, previous in ((10, None), (20, 10)):
            await _witness(db, log.event(size, previous))
        await _witness(db, Log("b").event(20, 10))
    finally:
        await db.dispose()
    tenant = uuid.uuid4()
    assert (await client.get("/v1/registry/witness/checkpoint")).status_code == 401
    served = await client.get("/v1/registry/witness/checkpoint", headers=token(tenant, "viewer"))
    assert served.status_code == 200
    body = served.json()
    assert (body["origin"], body["size"]) == (ORIGIN, 20)
    assert body["note"] == log.event(20, 10).note
    conflicts = "/v1/registry/witness/conflicts"
    assert (await client.get(conflicts, headers=token(tenant, "owner"))).status_code == 403
    assert (await client.get(conflicts)).status_code == 401
    operator = await client.get(conflicts, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert operator.status_code == 200
    assert [(c["kind"], c["size"]) for c in operator.json()["items"]] == [("fork", 20)]
