"""The Merkle log on PostgreSQL: appends, checkpoints, proofs checked by gpucloud_trust's
verifier, tampering found at its index, replays, the legacy chain, append-only refusals,
retention pruning under a clock."""

import base64
import datetime as dt
import json
import uuid

import psycopg
import pytest

from audit.app import queries
from audit.app.log import AuditLog, LogConfig
from audit.app.retention import prune, set_retention
from audit.domain.recording import SourceEvent
from gpucloud_trust.checkpoint import open_checkpoint
from gpucloud_trust.merkle import verify_consistency
from gpucloud_trust.verify import Entry, FindingKind, verify_log
from platformkit.db import libpq_url

ORIGIN = "audit.test/fleet"
A, B = str(uuid.uuid4()), str(uuid.uuid4())
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def grant(tenant: str, n: int, at: dt.datetime = START) -> SourceEvent:
    return SourceEvent(
        id=str(uuid.uuid4()), type="iam.membership.granted", source="iam", subject=f"m{n}",
        time=at, payload={"membership_id": f"m{n}", "tenant_id": tenant, "role": "admin"},
        tenant=tenant, actor="u-1", actor_kind="user", client_address="198.51.100.7",
    )  # fmt: skip


def new_log(every: int = 10_000, now=lambda: START) -> AuditLog:
    return AuditLog(LogConfig(origin=ORIGIN, checkpoint_every=every), clock=now)


async def append(db, log, events) -> int:
    async with db.unit_of_work() as uow:
        appended = await log.append(uow, events)
        await uow.commit()
        return appended


async def served(db, log, tenant=None, after=0):
    page = await queries.records(
        db, log, tenant=tenant, fleet=tenant is None, filters=queries.Filters(),
        after=after, limit=1000, proofs=True,
    )  # fmt: skip
    entries = [Entry(r["idx"], bytes(r["leaf"]), page.proofs[r["idx"]]) for r in page.rows]
    return page, entries


async def test_appends_checkpoints_and_proofs_verify(db):
    log = new_log(every=300)
    events = [grant(A if i % 3 else B, i) for i in range(700)]
    assert await append(db, log, events[:500]) == 500  # crosses 300: a checkpoint in the batch
    first = await queries.latest_checkpoint(db)
    assert first["size"] == 500
    assert await append(db, log, events[500:]) == 200
    assert await log.checkpoint(db) is not None  # the job signs what grew
    assert await log.checkpoint(db) is None  # and nothing twice
    verifier = await log.verifier(db)
    page, entries = await served(db, log)
    assert page.checkpoint["size"] == 700 and len(entries) == 700
    result = verify_log(
        latest=page.checkpoint["note"].encode(), log_keys=[verifier], origin=ORIGIN,
        pinned=[first["note"].encode()],
        consistency={500: await queries.consistency_proof(db, log, 500, 700)},
        entries=entries, expect_from=0,
    )  # fmt: skip
    assert result.ok, result.finding
    record = json.loads(bytes(page.rows[1]["leaf"]))
    assert record["actor"] == {"subject": "u-1", "kind": "user", "tenant": A}
    assert record["client_address"] == "198.51.100.7"
    assert record["action"] == "iam.membership.granted"

    # A tenant's view: only its records, each proven in the fleet tree, numbered 1..n.
    page_a, entries_a = await served(db, log, tenant=A)
    assert {r["tenant"] for r in page_a.rows} == {A}
    assert [r["tenant_seq"] for r in page_a.rows] == list(range(1, len(page_a.rows) + 1))
    sparse = verify_log(
        latest=page_a.checkpoint["note"].encode(), log_keys=[verifier], origin=ORIGIN,
        entries=entries_a,
    )  # fmt: skip
    assert sparse.ok and sparse.checked == len(entries_a)


async def test_the_checkpoint_event_carries_the_consistency_proof(db):
    log = new_log()
    await append(db, log, [grant(A, i) for i in range(300)])
    await log.checkpoint(db)
    await append(db, log, [grant(A, i) for i in range(300, 1000)])
    await log.checkpoint(db)
    async with db.unit_of_work() as uow:
        rows = await uow.fetch_all(
            "SELECT subject, payload FROM outbox WHERE type = 'audit.checkpoint.created'"
            " ORDER BY seq"
        )
    assert [r["subject"] for r in rows] == [f"{ORIGIN}/300", f"{ORIGIN}/1000"]
    second = json.loads(bytes(rows[1]["payload"]))
    assert second["previous_size"] == 300
    verifier = await log.verifier(db)
    old = open_checkpoint(
        json.loads(bytes(rows[0]["payload"]))["note"].encode(), [verifier], ORIGIN
    )
    new = open_checkpoint(second["note"].encode(), [verifier], ORIGIN)
    proof = [base64.b64decode(h) for h in second["consistency_proof"]]
    verify_consistency(300, 1000, old.root, new.root, proof)


async def test_a_replayed_event_appends_nothing_and_the_state_survives_a_restart(db):
    log = new_log()
    events = [grant(A, i) for i in range(10)]
    assert await append(db, log, events + events[:3]) == 10
    assert await append(db, log, events[5:]) == 0
    restarted = new_log()  # a new process: state rebuilt from the tiles
    assert await append(db, restarted, [grant(A, 99)]) == 1
    await restarted.checkpoint(db)
    page, entries = await served(db, restarted)
    assert [r["idx"] for r in page.rows] == list(range(11))
    verifier = await restarted.verifier(db)
    assert verify_log(
        latest=page.checkpoint["note"].encode(), log_keys=[verifier], origin=ORIGIN,
        entries=entries, expect_from=0,
    ).ok  # fmt: skip


def owner(url: str) -> psycopg.Connection:
    return psycopg.connect(libpq_url(url), autocommit=True)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_leaves SET actor = 'x' WHERE idx = 0",
        "DELETE FROM audit_leaves WHERE idx = 0",
        "TRUNCATE audit_leaves",
        "DELETE FROM audit_tiles",
        "UPDATE audit_checkpoints SET note = ''",
        "TRUNCATE audit_tree_heads CASCADE",
    ],
)
async def test_the_log_refuses_changes(db, audit_url, statement):
    log = new_log()
    await append(db, log, [grant(A, 1)])
    await log.checkpoint(db)
    with owner(audit_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


async def test_tampering_is_found_at_its_index_by_a_verifier_holding_a_checkpoint(db, audit_url):
    log = new_log()
    await append(db, log, [grant(A, i) for i in range(40)])
    await log.checkpoint(db)
    pinned = (await queries.latest_checkpoint(db))["note"].encode()
    verifier = await log.verifier(db)
    # Someone with the owner's rights switches the trigger off and rewrites record 17.
    with owner(audit_url) as conn:
        conn.execute("ALTER TABLE audit_leaves DISABLE TRIGGER audit_leaves_append_only")
        conn.execute(
            "UPDATE audit_leaves SET leaf = convert_to(replace(convert_from(leaf, 'UTF8'),"
            " '198.51.100.7', '10.0.0.1'), 'UTF8') WHERE idx = 17"
        )
    page, entries = await served(db, log)
    result = verify_log(
        latest=page.checkpoint["note"].encode(), log_keys=[verifier], origin=ORIGIN,
        pinned=[pinned], entries=entries, expect_from=0,
    )  # fmt: skip
    assert result.finding.kind is FindingKind.TAMPERED and result.finding.index == 17
    # ... or deletes record 30.
    with owner(audit_url) as conn:
        conn.execute("DELETE FROM audit_leaves WHERE idx = 30")
    page, entries = await served(db, log)
    result = verify_log(
        latest=page.checkpoint["note"].encode(), log_keys=[verifier], origin=ORIGIN,
        entries=[e for e in entries if e.index >= 18], expect_from=18,
    )  # fmt: skip
    assert result.finding.kind is FindingKind.MISSING and result.finding.index == 30


async def test_legacy_chained_records_become_the_first_leaves(db, audit_url):
    with owner(audit_url) as conn:
        for seq in (1, 2):
            conn.execute(
                "INSERT INTO audit_records (seq, id, event_id, event_type, source, subject,"
                " tenant, occurred_at, recorded_at, payload, prev_hash, hash) VALUES (%s, %s, %s,"
                " 'iam.tenant.created', 'iam', %s, %s, %s, %s, %s, %s, %s)",
                (seq, uuid.uuid4(), uuid.uuid4(), A, A, START, START,
                 json.dumps({"tenant_id": A, "name": "a"}), "0" * 64, f"{seq:064x}"),
            )  # fmt: skip
    log = new_log()
    assert await append(db, log, [grant(A, 1)]) == 3
    await log.checkpoint(db)
    page, _ = await served(db, log)
    first = json.loads(bytes(page.rows[0]["leaf"]))
    assert first["event_type"] == "iam.tenant.created"
    assert first["details"]["data"]["legacy_seq"] == 1
    assert page.rows[2]["tenant_seq"] == 3


async def test_retention_prunes_whole_tiles_after_a_checkpoint_only(db):
    now = [START]
    log = new_log(now=lambda: now[0])
    old = [grant(A, i, START) for i in range(600)]
    await append(db, log, old)
    assert await prune(db, clock=lambda: START + dt.timedelta(days=500)) == 0  # no checkpoint
    await log.checkpoint(db)
    await append(db, log, [grant(B, i, START + dt.timedelta(days=300)) for i in range(100)])
    await log.checkpoint(db)
    await set_retention(db, B, 30)
    # At day 401 A's records (day 0) are past 400 days; B's (day 300) within neither policy's end.
    assert await prune(db, clock=lambda: START + dt.timedelta(days=350)) == 0
    assert await prune(db, clock=lambda: START + dt.timedelta(days=401)) == 512
    assert await prune(db, clock=lambda: START + dt.timedelta(days=401)) == 0
    page, entries = await served(db, log)
    assert page.rows[0]["idx"] == 512
    verifier = await log.verifier(db)
    assert verify_log(
        latest=page.checkpoint["note"].encode(), log_keys=[verifier], origin=ORIGIN,
        entries=entries, expect_from=512,
    ).ok  # fmt: skip
