"""Audit log benchmark: the service's paths, with Kafka and PostgreSQL (issue 15).

One run, on a scratch topic (6 partitions) and scratch audit databases (migrated):

1. N privileged-action events (`iam.membership.granted`, spread over tenants, each with its
   actor, client address and trace) are produced to the topic;
2. baseline, **PostgreSQL insert-only**: the same `audit_leaves` rows (record encoded and
   leaf bytes built before the clock starts) inserted by audit's own unnest INSERT, one
   transaction per batch of the log subscription's `max_records`: no Kafka, no hashing,
   no tiles, no tree head, no checkpoints;
3. **end to end**: audit's `log` batch subscription (`AuditLog.append_events`) in the kit's
   `ServiceRuntime`, as audit's definition declares it, from the first batch to the last
   committed offset: decode, AU-3 mapping, dedup by event id, tenant_seq, leaf hashes, tile
   versions, tree head and a signed checkpoint every 1,000 records (the consumer group join
   is reported apart);
4. **inclusion proofs through the database** at ``--leaves`` (10 million) leaves: the tiles
   of a tree of that size are built in memory (libs/trust) and stored in `audit_tiles`, then
   ``--proofs`` proofs of uniformly random leaves are served by the service's proof path
   (`AuditLog.inclusion_proofs`: plan, one tile query, assembly), one transaction each as
   `GET /v1/audit/records/{index}/proof` does, and each is verified outside the timing;
5. **verify** (what `gpucloud audit verify` does once it has downloaded a trail):
   `gpucloud_cli.auditlog.verify_trail` over one tenant's records of (3), read with their
   proofs by the service's paging query (`queries.records`, pages of 1,000) at the final
   signed checkpoint. The page reads are timed apart.

The headline is (3) against (2) of the same run: a busy shared host moves both.
"""

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiokafka.admin import NewTopic

from audit.app import queries
from audit.app.log import AuditLog, LogConfig, source_event
from audit.bootstrap import DEFINITION
from audit.domain.recording import to_record
from audit.store.log import LogRepository
from bench.common import (
    bench_kafka,
    environment,
    now,
    print_table,
    save_results,
    scratch_database,
    summarize_ms,
)
from bench.report import Headline, Summary
from devstack.infra import ensure_infra
from gpucloud_cli.auditlog import verify_trail
from gpucloud_contracts.events.iam import MembershipGranted
from gpucloud_trust import merkle, tiles
from gpucloud_trust.records import encode_record
from platformkit import kafka as kafka_clients
from platformkit.consumers import dlq_topic
from platformkit.db import Database
from platformkit.envelope import CloudEvent, new_event
from platformkit.kafka import KafkaSettings
from platformkit.runtime import ServiceRuntime
from platformkit.service import migrate
from platformkit.settings import ServiceSettings

SUMMARY = "audit log: appends/s Kafka -> tree vs plain INSERTs, proof p99 from tiles, verify/s"
TARGET_APPENDS_PER_S = 20_000
TARGET_PROOF_P99_MS = 5.0
PARTITIONS = 6
TENANTS = 20
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
ORIGIN = "audit.bench.local/fleet"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=200_000, help="events appended (200000)")
    parser.add_argument("--leaves", type=int, default=10_000_000, help="proof tree size (10M)")
    parser.add_argument("--proofs", type=int, default=2_000, help="inclusion proofs (2000)")
    parser.add_argument("--seed", type=int, default=7, help="seed (7)")
    parser.add_argument(
        "--quick", action="store_true", help="10,000 events, 100,000 leaves, 200 proofs"
    )


def make_events(n: int) -> list[CloudEvent]:
    tenants = [uuid.uuid4() for _ in range(TENANTS)]
    events = []
    for i in range(n):
        tenant = tenants[i % TENANTS]
        membership = uuid.uuid4()
        events.append(
            new_event(
                type="iam.membership.granted",
                source="iam",
                subject=str(membership),
                tenant=str(tenant),
                traceparent=f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01",
                actor=str(uuid.uuid4()),
                actor_kind="user",
                client_address=f"203.0.113.{i % 250}",
                payload=MembershipGranted(
                    membership_id=membership,
                    tenant_id=tenant,
                    principal_id=uuid.uuid4(),
                    principal_kind="user",
                    role="member",
                    granted_by=uuid.uuid4(),
                    granted_at=T0 + dt.timedelta(milliseconds=i),
                ),
            )
        )
    return events


@contextlib.asynccontextmanager
async def _topic(kafka: KafkaSettings) -> AsyncIterator[str]:
    """A scratch topic and its dead-letter topic (the batch consumer's DLQ)."""
    topic = f"bench.{uuid.uuid4().hex[:10]}.v1"
    admin = kafka_clients.admin_client(kafka, "bench-audit")
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, PARTITIONS, 1), NewTopic(dlq_topic(topic), 1, 1)]
        )
        yield topic
    finally:
        with contextlib.suppress(Exception):
            await admin.delete_topics([topic, dlq_topic(topic)])
        await admin.close()


async def produce(kafka: KafkaSettings, topic: str, events: list[CloudEvent]) -> float:
    producer = kafka_clients.producer(kafka, "bench-audit")
    await producer.start()
    try:
        started = now()
        acks = [
            await producer.send(topic, value=e.data, key=e.key, headers=e.headers()) for e in events
        ]
        await asyncio.gather(*acks)
        return len(events) / (now() - started)
    finally:
        await producer.stop()


def _leaf_columns(events: list[CloudEvent], start: int) -> dict[str, list[Any]]:
    """audit_leaves' columns of `events` as the log builds them (AuditLog.append)."""
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
    for offset, event in enumerate(events):
        record = to_record(source_event(event), start + offset + 1)
        assert record is not None
        columns["idx"].append(start + offset)
        columns["event_id"].append(uuid.UUID(record.event_id))
        columns["tenant"].append(record.tenant)
        columns["tenant_seq"].append(start + offset + 1)
        columns["actor"].append(record.actor.subject)
        columns["action"].append(record.action)
        columns["target_kind"].append(record.target.kind)
        columns["target_id"].append(record.target.id)
        columns["occurred_at"].append(record.time)
        columns["leaf"].append(encode_record(record))
    return columns


async def insert_only(url: str, events: list[CloudEvent], batch: int) -> float:
    """Baseline: the same leaf rows by audit's unnest INSERT, one transaction per batch."""
    from audit.store.log import _INSERT_LEAVES  # the statement the log appends with

    db = Database(url, pool_size=2)
    batches = [_leaf_columns(events[i : i + batch], i) for i in range(0, len(events), batch)]
    try:
        started = now()
        for columns in batches:
            async with db.unit_of_work() as uow:
                await uow.session.execute(_INSERT_LEAVES, columns)
                await uow.commit()
        return len(events) / (now() - started)
    finally:
        await db.dispose()


class _Counted:
    """audit's batch handler, counting what it appended."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self.appended = 0

    async def __call__(self, events: Any, uow: Any) -> int:
        appended = await self.log.append_events(events, uow)
        uow.after_commit(lambda: setattr(self, "appended", self.appended + appended))
        return appended


def _log() -> AuditLog:
    return AuditLog(dataclasses.replace(LogConfig(), origin=ORIGIN, key_passphrase=None))


async def end_to_end(url: str, kafka: KafkaSettings, topic: str, n: int) -> dict[str, Any]:
    log = _log()
    handler = _Counted(log)
    (subscription,) = DEFINITION.batch_subscriptions
    definition = dataclasses.replace(
        DEFINITION,
        subscriptions=(),
        batch_subscriptions=[dataclasses.replace(subscription, topics=(topic,), handle=handler)],
        jobs=(),
        relay=False,
    )
    settings = ServiceSettings(
        f"bench-{uuid.uuid4().hex[:6]}", kafka=kafka, database_url=url, heartbeat_interval_s=0
    )
    runtime = ServiceRuntime(definition, settings)
    (consumer,) = runtime.consumers
    joining = now()
    await runtime.start()
    first: tuple[float, int, float] | None = None
    try:
        while handler.appended < n or await consumer.lag() != 0:
            if first is None and consumer.batches:
                first = (now(), handler.appended, time.process_time())
            await asyncio.sleep(0.01)
        done, cpu_done = now(), time.process_time()
    finally:
        await runtime.stop()
    if first is None:
        raise RuntimeError("the consumer finished before a batch was seen")
    return {
        "appends_per_s": round((n - first[1]) / (done - first[0])),
        "cpu_us_per_append": round((cpu_done - first[2]) / (n - first[1]) * 1e6, 1),
        "join_s": round(first[0] - joining, 2),
        "batches": consumer.batches,
        "appended": handler.appended,
        "max_records": subscription.max_records,
    }


async def proofs_from_tiles(url: str, leaves: int, count: int, rng: random.Random) -> dict:
    """A tree of `leaves` leaves stored as audit's tiles; proofs by the service's path."""
    db = Database(url, pool_size=2)
    state = tiles.TreeState.empty()
    built = now()
    batch = 16_384
    try:
        for start in range(0, leaves, batch):
            data = os.urandom(min(batch, leaves - start) * 32)
            appended = tiles.append(state, data)
            state = appended.state
            rows = [(t.level, t.index, t.width, t.hashes) for t in appended.tiles]
            async with db.unit_of_work() as uow:
                await LogRepository(uow).append(
                    {"idx": [], "event_id": [], "tenant": [], "tenant_seq": [], "actor": [],
                     "action": [], "target_kind": [], "target_id": [], "occurred_at": [],
                     "leaf": []},
                    rows, state.size, state.root(), T0,
                )  # fmt: skip
                await uow.commit()
        built = now() - built
        root, size = state.root(), state.size
        log = _log()
        walls: list[float] = []
        for _ in range(count):
            index = rng.randrange(size)
            started = now()
            async with db.unit_of_work(snapshot=True) as uow:
                proof = (await log.inclusion_proofs(LogRepository(uow), [index], size))[index]
            walls.append(now() - started)
            # the leaf hash is the bottom tile's entry: check the proof against the root
            async with db.unit_of_work() as uow:
                stored = await LogRepository(uow).read_tiles({(0, index // 256)})
            bottom = stored[(0, index // 256)]
            leaf = bottom[(index % 256) * 32 : (index % 256 + 1) * 32]
            merkle.verify_inclusion(index, size, leaf, proof, root)
        return {"tree_size": size, "build_and_store_s": round(built, 1), **summarize_ms(walls)}
    finally:
        await db.dispose()


async def verify_one_trail(url: str) -> dict[str, Any]:
    """One tenant's whole trail at the final checkpoint, read as the CLI pages it, then
    verified as `gpucloud audit verify` does."""
    db = Database(url, pool_size=2)
    log = _log()
    try:
        await log.checkpoint(db)
        async with db.unit_of_work() as uow:
            tenant = (await uow.fetch_one("SELECT tenant FROM audit_leaves ORDER BY idx LIMIT 1"))[
                "tenant"
            ]
        vkey = (await log.verifier(db)).vkey
        started, after, served = now(), 0, []
        page = None
        while after is not None:
            page = await queries.records(
                db, log, tenant=tenant, fleet=False, filters=queries.Filters(),
                after=after, limit=1000, proofs=True,
            )  # fmt: skip
            served += [
                {
                    "index": r["idx"],
                    "leaf": base64.b64encode(bytes(r["leaf"])).decode(),
                    "proof": [base64.b64encode(h).decode() for h in page.proofs[r["idx"]]],
                }
                for r in page.rows
            ]
            after = page.next_after
        read_s = now() - started
        assert page is not None
        cpu, started = time.process_time(), now()
        outcome = verify_trail(
            vkey=vkey, origin=ORIGIN, latest_note=page.checkpoint["note"], pinned=None,
            consistency=None, records=served, tenant_id=tenant,
        )  # fmt: skip
        wall, cpu = now() - started, time.process_time() - cpu
        assert outcome.ok and outcome.checked == len(served), outcome.finding
        return {
            "records": len(served),
            "tree_size": outcome.size,
            "verify_per_s": round(len(served) / wall),
            "cpu_us_per_record": round(cpu / len(served) * 1e6, 1),
            "read_pages_per_s": round(len(served) / read_s),
        }
    finally:
        await db.dispose()


def _new_audit_database(stack: contextlib.ExitStack, admin_url: str) -> str:
    url = stack.enter_context(scratch_database(admin_url))
    migrate(DEFINITION, ServiceSettings("audit", database_url=url))
    return url


async def _run(args: argparse.Namespace, kafka: KafkaSettings, urls: list[str]) -> dict[str, Any]:
    (subscription,) = DEFINITION.batch_subscriptions
    events = make_events(args.events)
    out: dict[str, Any] = {}
    async with _topic(kafka) as topic:
        out["produce_per_s"] = round(await produce(kafka, topic, events))
        print("  produced; PostgreSQL insert-only ...")
        out["insert_only_per_s"] = round(
            await insert_only(urls[0], events, subscription.max_records)
        )
        print("  end to end (Kafka -> audit's log consumer -> tree) ...")
        out["end_to_end"] = await end_to_end(urls[1], kafka, topic, args.events)
    print("  verify (one tenant's trail) ...")
    out["verify"] = await verify_one_trail(urls[1])
    print(f"  tiles of {args.leaves:,} leaves into PostgreSQL; proofs ...")
    out["proofs"] = await proofs_from_tiles(
        urls[2], args.leaves, args.proofs, random.Random(args.seed)
    )
    out["ratio_to_insert_only"] = round(
        out["end_to_end"]["appends_per_s"] / out["insert_only_per_s"], 2
    )
    return out


def main(args: argparse.Namespace) -> int:
    if args.quick:
        args.events, args.leaves, args.proofs = 10_000, 100_000, 200
    os.environ.setdefault("GPUCLOUD_AUDIT_KEY_PASSPHRASE", "bench")
    infra = ensure_infra()
    results: dict[str, Any] = {
        "benchmark": "audit",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": vars(args),
        "environment": environment(),
        "partitions": PARTITIONS,
    }
    print(f"audit: {args.events:,} events, proofs at {args.leaves:,} leaves ...")
    with contextlib.ExitStack() as stack:
        urls = [_new_audit_database(stack, infra.pg_admin_url) for _ in range(3)]
        results.update(asyncio.run(_run(args, bench_kafka(infra), urls)))
    results["environment"]["load_average_1m_end"] = os.getloadavg()[0]
    e2e, p, v = results["end_to_end"], results["proofs"], results["verify"]
    results["target"] = {
        "appends_per_s": TARGET_APPENDS_PER_S,
        "appends_met": e2e["appends_per_s"] >= TARGET_APPENDS_PER_S,
        "proof_p99_ms": TARGET_PROOF_P99_MS,
        "proof_p99_met": p["p99_ms"] <= TARGET_PROOF_P99_MS,
    }
    print_table(
        "audit log",
        ["stage", "items/s", "notes"],
        [
            ["produce (Kafka)", results["produce_per_s"], f"{args.events:,} events"],
            ["baseline: INSERT leaves only", results["insert_only_per_s"], "same rows, no tree"],
            [
                "end to end: Kafka -> log -> tree",
                e2e["appends_per_s"],
                f"ratio {results['ratio_to_insert_only']}; {e2e['cpu_us_per_append']} CPU us"
                f"/append; {e2e['batches']} batches; join {e2e['join_s']} s",
            ],
            ["verify_trail (CLI)", v["verify_per_s"], f"{v['records']:,} records of one tenant"],
            ["  paging reads with proofs", v["read_pages_per_s"], "queries.records, 1,000/page"],
        ],
    )
    print_table(
        f"inclusion proof from audit_tiles at {p['tree_size']:,} leaves, ms",
        ["p50", "p90", "p99", "max", "tiles built + stored (s)"],
        [[p["p50_ms"], p["p90_ms"], p["p99_ms"], p["max_ms"], p["build_and_store_s"]]],
    )
    print(f"\nresults: {save_results('audit', results)}")
    return 0


def headlines(results: dict[str, Any]) -> Summary:
    e2e, p = results["end_to_end"], results["proofs"]
    return Summary(
        headlines=[
            Headline(
                "appends (Kafka -> tree)",
                e2e["appends_per_s"],
                "records/s",
                baseline=results["insert_only_per_s"],
                baseline_name="plain INSERT of the same rows",
                target=TARGET_APPENDS_PER_S,
            ),
            Headline(
                f"inclusion proof p99 from tiles at {p['tree_size']:,} leaves",
                p["p99_ms"],
                "ms",
                better="lower",
                target=TARGET_PROOF_P99_MS,
            ),
            Headline("CLI verify", results["verify"]["verify_per_s"], "records/s"),
        ],
        latencies={"inclusion proof (database)": p},
    )
