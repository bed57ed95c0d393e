"""Audit-log tree benchmark: the pure layer of libs/trust (`gpucloud_trust`), no database.

Four measurements, in one run:

1. **records**: `records.encode_record` + `merkle.leaf_hash` on varied version-1 audit
   records (the per-record CPU the audit service pays before the tree);
2. **append**: `tiles.append` of ``--leaves`` random leaf hashes (default 10 million) in
   batches of ``--batch`` (4,000), the tiles written into a `MemoryTileStore`; against the
   ceiling of one SHA-256 per leaf (a list comprehension hashing the batch's 65-byte node
   inputs, the least any RFC 6962 tree can do), timed on every tenth batch right after its
   append so both see the same load; first and last tenth of the run apart (appending must
   not slow down as the tree grows);
3. **proofs** at the final size: ``--proofs`` inclusion proofs of uniformly random leaves
   and of leaves near the right edge, consistency proofs from random older sizes, roots
   of random older sizes; each is plan + tile read (a dict lookup here, one query in the
   service) + assembly, and each proof is verified (outside the timing);
4. **verify**: `verify.verify_log` over ``--records`` served records with their inclusion
   proofs, a pinned checkpoint and its consistency proof (what `gpucloud audit verify`
   does per record, without the download).

Wall time on a shared host is noisy; CPU time (`time.process_time`) per item is reported
too and moves far less with the load.
"""

import argparse
import datetime as dt
import hashlib
import os
import random
import time
import uuid
from typing import Any

from bench.common import environment, print_table, save_results, summarize_ms
from bench.report import Headline, Summary
from gpucloud_trust import merkle
from gpucloud_trust.checkpoint import Checkpoint
from gpucloud_trust.note import Signer
from gpucloud_trust.records import Actor, AuditRecord, Target, encode_record
from gpucloud_trust.tiles import (
    MemoryTileStore,
    TiledLog,
    TreeState,
    append,
    consistency_plan,
    inclusion_plan,
    root_plan,
)
from gpucloud_trust.verify import Entry, verify_log

SUMMARY = "audit tree (libs/trust, pure): appends/s into tiles, proofs at 10M leaves, verify/s"
TARGET_APPENDS_PER_S = 20_000
TARGET_PROOF_P99_MS = 5.0
ORIGIN = "audit.gpucloud.example/fleet"
ACTIONS = [
    ("iam.session.signed_in", "session"),
    ("iam.member.role_changed", "member"),
    ("billing.payment.captured", "payment"),
    ("gpuaas.allocation.created", "allocation"),
    ("registry.release.promoted", "release"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--leaves", type=int, default=10_000_000, help="tree size (10M)")
    parser.add_argument("--batch", type=int, default=4_000, help="leaves per append (4000)")
    parser.add_argument("--proofs", type=int, default=2_000, help="proofs of each kind (2000)")
    parser.add_argument(
        "--records", type=int, default=20_000, help="records encoded and verified (20000)"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed (7)")
    parser.add_argument("--quick", action="store_true", help="1M leaves, 300 proofs, 5k records")


def sample_records(count: int, rng: random.Random) -> list[AuditRecord]:
    tenants = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(50)]
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    out = []
    for i in range(count):
        action, kind = ACTIONS[i % len(ACTIONS)]
        tenant = tenants[rng.randrange(len(tenants))]
        out.append(
            AuditRecord(
                event_id=str(uuid.UUID(int=rng.getrandbits(128))),
                event_type=f"{action}.v1",
                time=t0 + dt.timedelta(microseconds=i * 1_337),
                actor=Actor(f"user:{uuid.UUID(int=rng.getrandbits(128))}", "user", tenant),
                action=action,
                target=Target(kind, str(uuid.UUID(int=rng.getrandbits(128))), tenant, None),
                outcome="success" if i % 10 else "failure",
                service=action.split(".")[0],
                client_address=f"203.0.113.{i % 250}",
                trace_id=f"{rng.getrandbits(128):032x}",
                details={"attempt": i % 3, "reason": "policy" if i % 10 == 0 else "ok"},
            )
        )
    return out


def run_records(records: list[AuditRecord]) -> tuple[dict[str, Any], list[bytes]]:
    wall, cpu = time.perf_counter(), time.process_time()
    encoded = [encode_record(r) for r in records]
    hashes = [merkle.leaf_hash(e) for e in encoded]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert len(hashes) == len(records)
    return {
        "records": len(records),
        "per_s": round(len(records) / wall),
        "cpu_us_per_record": round(cpu / len(records) * 1e6, 2),
        "mean_bytes": round(sum(map(len, encoded)) / len(encoded)),
    }, encoded


def run_append(leaves: int, batch: int) -> tuple[dict[str, Any], TiledLog]:
    store = MemoryTileStore()
    state = TreeState.empty()
    batch_times: list[float] = []
    rows: list[int] = []
    cpu_total = 0.0
    tenth = max(1, (leaves // batch) // 10)
    first_tenth = last_tenth = 0.0
    sampled_append = sampled_ceiling = 0.0
    batches = leaves // batch
    for n in range(batches):
        data = os.urandom(batch * 32)  # leaf hashes: generated outside the timing
        cpu = time.process_time()
        start = time.perf_counter()
        appended = append(state, data)
        store.write(appended.tiles)
        elapsed = time.perf_counter() - start
        cpu_total += time.process_time() - cpu
        state = appended.state
        batch_times.append(elapsed)
        rows.append(len(appended.tiles))
        if n < tenth:
            first_tenth += elapsed
        if n >= batches - tenth:
            last_tenth += elapsed
        if n % 10 == 0:
            sampled_append += elapsed
            sampled_ceiling += hash_ceiling(data)
    appended_leaves = batches * batch
    wall = sum(batch_times)
    ceiling = appended_leaves / wall * sampled_append / sampled_ceiling
    log = TiledLog(store)
    log.state = state
    return {
        "leaves": appended_leaves,
        "batch": batch,
        "per_s": round(appended_leaves / wall),
        "cpu_us_per_leaf": round(cpu_total / appended_leaves * 1e6, 3),
        "first_tenth_per_s": round(tenth * batch / first_tenth),
        "last_tenth_per_s": round(tenth * batch / last_tenth),
        "batch_ms": summarize_ms(batch_times),
        "rows_per_batch_mean": round(sum(rows) / len(rows), 1),
        "rows_per_batch_max": max(rows),
        "tiles_stored": len(store.tiles),
        "hash_bytes_stored": sum(map(len, store.tiles.values())),
        "ceiling_sha256_per_s": round(ceiling),
        "ratio_to_ceiling": round(sampled_ceiling / sampled_append, 3),
    }, log


def hash_ceiling(data: bytes) -> float:
    """Seconds to compute one node hash per leaf of the batch (64-byte inputs)."""
    sha, prefix = hashlib.sha256, b"\x01"
    start = time.perf_counter()
    digests = [sha(prefix + data[i : i + 64]).digest() for i in range(0, len(data), 32)]
    elapsed = time.perf_counter() - start
    assert len(digests) == len(data) // 32
    return elapsed


def with_cpu(walls: list[float], cpus: list[float]) -> dict[str, Any]:
    cpu = summarize_ms(cpus)
    return {**summarize_ms(walls), "cpu_p50_ms": cpu["p50_ms"], "cpu_p99_ms": cpu["p99_ms"]}


def timed(fn: Any) -> tuple[float, float, Any]:
    cpu = time.process_time()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, time.process_time() - cpu, result


def run_proofs(log: TiledLog, count: int, rng: random.Random) -> dict[str, Any]:
    size = log.size
    root = log.root()
    store = log.store
    out: dict[str, Any] = {"tree_size": size}

    def inclusion(indices: list[int]) -> dict[str, Any]:
        walls: list[float] = []
        cpus: list[float] = []
        tiles_read: list[int] = []
        for index in indices:

            def prove(index: int = index) -> list[bytes]:
                plan = inclusion_plan(index, size)
                needed = plan.tiles()
                tiles_read.append(len(needed))
                return plan.assemble(store.read(needed))

            wall, cpu, proof = timed(prove)
            walls.append(wall)
            cpus.append(cpu)
            merkle.verify_inclusion(index, size, log.leaf_hash(index), proof, root)
        return {
            **with_cpu(walls, cpus),
            "tiles_read_mean": round(sum(tiles_read) / len(tiles_read), 2),
            "tiles_read_max": max(tiles_read),
        }

    out["inclusion_uniform"] = inclusion([rng.randrange(size) for _ in range(count)])
    edge = min(size, 5_000)
    out["inclusion_near_edge"] = inclusion([size - 1 - rng.randrange(edge) for _ in range(count)])

    walls, cpus = [], []
    for _ in range(count):
        old = rng.randrange(1, size)
        wall, cpu, proof = timed(
            lambda old=old: consistency_plan(old, size).assemble(
                store.read(consistency_plan(old, size).tiles())
            )
        )
        walls.append(wall)
        cpus.append(cpu)
        old_root = log.root(old)
        merkle.verify_consistency(old, size, old_root, root, proof)
    out["consistency"] = with_cpu(walls, cpus)

    walls, cpus = [], []
    for _ in range(count):
        old = rng.randrange(1, size + 1)
        plan = root_plan(old)
        wall, cpu, _ = timed(lambda plan=plan: plan.assemble(store.read(plan.tiles())))
        walls.append(wall)
        cpus.append(cpu)
    out["root_at_older_size"] = with_cpu(walls, cpus)
    wall, _, _ = timed(log.state.root)
    out["root_from_state_ms"] = round(wall * 1000, 3)
    return out


def run_verify(encoded: list[bytes]) -> dict[str, Any]:
    signer = Signer.generate(ORIGIN)
    log = TiledLog()
    log.append([merkle.leaf_hash(e) for e in encoded])
    pinned_size = len(encoded) // 2
    pinned = Checkpoint(ORIGIN, pinned_size, log.root(pinned_size)).sign(signer)
    latest = Checkpoint(ORIGIN, log.size, log.root(), dt.datetime.now(dt.UTC)).sign(signer)
    entries = [Entry(i, data, log.inclusion_proof(i)) for i, data in enumerate(encoded)]
    wall, cpu, report = timed(
        lambda: verify_log(
            latest=latest,
            log_keys=[signer.verifier],
            origin=ORIGIN,
            pinned=[pinned],
            consistency={pinned_size: log.consistency_proof(pinned_size)},
            entries=entries,
            expect_from=0,
        )
    )
    assert report.ok and report.checked == len(encoded), report.finding
    return {
        "records": len(encoded),
        "per_s": round(len(encoded) / wall),
        "cpu_us_per_record": round(cpu / len(encoded) * 1e6, 2),
    }


def main(args: argparse.Namespace) -> int:
    if args.quick:
        args.leaves, args.proofs, args.records = 1_000_000, 300, 5_000
    rng = random.Random(args.seed)
    results: dict[str, Any] = {
        "benchmark": "audit-tree",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": vars(args),
        "environment": environment(),
    }
    print(f"audit-tree: {args.records:,} records, {args.leaves:,} leaves ...")
    records_result, encoded = run_records(sample_records(args.records, rng))
    results["records"] = records_result
    print("  records encoded; appending ...")
    results["append"], log = run_append(args.leaves, args.batch)
    print("  tree built; proofs ...")
    results["proofs"] = run_proofs(log, args.proofs, rng)
    del log
    print("  verifying ...")
    results["verify"] = run_verify(encoded)

    a, p, r, v = results["append"], results["proofs"], results["records"], results["verify"]
    print_table(
        "throughput",
        ["stage", "items/s", "CPU us/item", "notes"],
        [
            [
                "encode + leaf hash (records)",
                r["per_s"],
                r["cpu_us_per_record"],
                f"{r['mean_bytes']} bytes/record",
            ],
            [
                "append into tiles (leaves)",
                a["per_s"],
                a["cpu_us_per_leaf"],
                f"{a['rows_per_batch_mean']} rows/batch of {a['batch']}",
            ],
            [
                "  first tenth / last tenth",
                f"{a['first_tenth_per_s']:,} / {a['last_tenth_per_s']:,}",
                None,
                "leaves/s early vs late in the run",
            ],
            [
                "ceiling: one SHA-256 per leaf",
                a["ceiling_sha256_per_s"],
                None,
                f"append/ceiling {a['ratio_to_ceiling']}",
            ],
            [
                "verify_log (records)",
                v["per_s"],
                v["cpu_us_per_record"],
                "leaf hash + inclusion proof each",
            ],
        ],
    )
    rows = []
    for name in ("inclusion_uniform", "inclusion_near_edge", "consistency", "root_at_older_size"):
        s = p[name]
        rows.append(
            [
                name,
                s["p50_ms"],
                s["p90_ms"],
                s["p99_ms"],
                s["max_ms"],
                s["cpu_p50_ms"],
                s["cpu_p99_ms"],
                s.get("tiles_read_mean"),
                s.get("tiles_read_max"),
            ]
        )
    print_table(
        f"proofs at {p['tree_size']:,} leaves (plan + tile read + assembly), ms",
        ["proof", "p50", "p90", "p99", "max", "CPU p50", "CPU p99", "tiles mean", "tiles max"],
        rows,
    )
    print(
        f"\nstored: {a['tiles_stored']:,} tiles, {a['hash_bytes_stored'] / 1e6:,.1f} MB of hashes"
    )
    results["target"] = {
        "appends_per_s": TARGET_APPENDS_PER_S,
        "appends_met": a["per_s"] >= TARGET_APPENDS_PER_S,
        "proof_p99_ms": TARGET_PROOF_P99_MS,
        "proof_p99_met": p["inclusion_uniform"]["p99_ms"] <= TARGET_PROOF_P99_MS,
        "note": "pure layer only; the service adds Kafka, PostgreSQL and HTTP",
    }
    print(f"results: {save_results('audit-tree', results)}")
    return 0


def headlines(results: dict[str, Any]) -> Summary:
    """The common schema (bench/report.py): appends against one SHA-256 per leaf, proofs."""
    a, p = results["append"], results["proofs"]
    return Summary(
        headlines=[
            Headline(
                "appends",
                a["per_s"],
                "leaves/s",
                baseline=a["ceiling_sha256_per_s"],
                baseline_name="one SHA-256 per leaf",
                target=TARGET_APPENDS_PER_S,
            ),
            Headline(
                f"inclusion proof p99 at {p['tree_size']:,} leaves",
                p["inclusion_uniform"]["p99_ms"],
                "ms",
                better="lower",
                target=TARGET_PROOF_P99_MS,
            ),
        ],
        latencies={"inclusion proof": p["inclusion_uniform"]},
    )
