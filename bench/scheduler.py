"""GPU scheduler benchmark: placements per second and fragmentation of gpuaas's pure policy.

No database, no fleet: gpuaas's domain (`placement.place`, `PlacementIndex`, `geometry`)
on N simulated nodes x 8 H100s. A seeded random workload of allocate/release steps, mixed
like the service's traffic (25 % whole-GPU requests of 1 or 2 GPUs, 75 % single MIG slices
of every profile), kept around 85 % compute utilisation (above it, a release is forced).

Four policies, in the same run:

- **policy, incremental index** (the headline): `PlacementIndex.place` + `book`, what
  gpuaas keeps in memory;
- **previous index** (baseline): the index and policy as they were before issue 16
  (`bench/scheduler_baseline.py`, frozen), on its own trajectory with the same request
  sequence: placements/s and fragmentation, old against new in one run;
- **policy, plain scan** (baseline): `placement.place` over a snapshot of every node, the
  reference the index is property-tested against. The index makes the same decisions, so
  the scan is timed on the *same* states, on a sample of the steps (`--scan-every`), which
  keeps its run short; the decisions are compared on those samples and any disagreement
  is reported;
- **first fit** (baseline): the lowest node, GPU and start where the request fits; its
  decisions differ, so it runs its own trajectory with the same request sequence, for its
  fragmentation.

Fragmentation is `geometry.fragmentation` over all GPUs at the end (1 - largest placeable
compute / free compute), plus how many GPUs can still take a 4g instance.

**Packing quality** against the exact optimum (`gpuaas.domain.optimum`): on `--quality-seeds`
small random fleets (1-2 nodes of 1-3 GPUs) and request sequences with no releases, the
number of requests each policy takes before its first refusal, over the longest prefix any
packing could hold (the exhaustive packer). Three mixes: MIG only, 15 % and 25 % whole GPUs.
"""

import argparse
import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bench import scheduler_baseline as previous
from bench.common import environment, print_table, save_results, scratch_database, summarize_ms
from bench.report import Headline, Summary
from gpuaas.domain.catalog import SHAPES, SKUS, ProfileShape
from gpuaas.domain.geometry import Layout, can_place, fragmentation, instance_of
from gpuaas.domain.optimum import Request, longest_prefix, policy_prefix
from gpuaas.domain.placement import Booking, Decision, GpuState, NodeCapacity, place
from gpuaas.domain.placement_index import PlacementIndex

SUMMARY = "placements/s and fragmentation of gpuaas's placement policy (pure, no fleet)"
TARGET_PLACEMENTS_PER_S = 10_000  # issue 16
TARGET_LIVE_ALLOCATIONS_PER_S = 1_000  # create_allocation, 8 concurrent clients (issue 16)
GPUS_PER_NODE = 8
MIG_PROFILES = [p.shape for p in SKUS["h100-80gb"].profiles]
FOUR_G = SHAPES[5]  # the 4g profile: "can a large slice still fit" after the run
TARGET_UTILISATION = 0.85
COMPUTE_SLICES = 7

Policy = Callable[[Sequence[NodeCapacity], ProfileShape | None, int], Decision | None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=1_000, help="simulated nodes (1000)")
    parser.add_argument("--steps", type=int, default=100_000, help="allocate/release steps")
    parser.add_argument("--seed", type=int, default=7, help="workload seed (7)")
    parser.add_argument(
        "--scan-every", type=int, default=10, help="time the plain scan on every Nth request"
    )
    parser.add_argument(
        "--quality-seeds",
        type=int,
        default=1_000,
        help="small random fleets per mix for packing quality against the optimum (1000; 0 skips)",
    )
    parser.add_argument(
        "--no-first-fit", action="store_true", help="skip the first-fit trajectory (slow)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 200 nodes, 10,000 steps, 100 seeds"
    )
    parser.add_argument(
        "--live-requests",
        type=int,
        default=2_000,
        help="allocations through the service's use case on PostgreSQL (2000; 0 skips it)",
    )
    parser.add_argument(
        "--live-concurrency", type=int, default=8, help="concurrent requests, live row (8)"
    )


def first_fit(
    nodes: Sequence[NodeCapacity], shape: ProfileShape | None, count: int
) -> Decision | None:
    """Baseline: the first node, GPU and start where a MIG slice fits; whole GPUs as the
    policy places them (both pick empty GPUs; the difference is in MIG packing)."""
    if shape is None or count != 1:
        return place(nodes, shape, count)
    for node in nodes:
        for gpu in node.gpus:
            for start in shape.starts:
                if can_place(gpu.layout, shape, start):
                    return Decision(
                        node.node_id, (Booking(gpu.gpu_id, gpu.index, instance_of(shape, start)),)
                    )
    return None


@dataclass
class Fleet:
    """The simulated fleet's layouts, and a NodeCapacity snapshot kept current per node."""

    node_ids: list[uuid.UUID]
    gpu_ids: dict[uuid.UUID, list[uuid.UUID]]
    layouts: dict[uuid.UUID, Layout] = field(default_factory=dict)
    node_of: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    nodes: dict[uuid.UUID, NodeCapacity] = field(default_factory=dict)
    used: int = 0  # compute slices in use

    @classmethod
    def new(cls, n_nodes: int, rng: random.Random) -> "Fleet":
        # Sorted: the index and the scan break ties in node-id order (the database's order).
        node_ids = sorted(uuid.UUID(int=rng.getrandbits(128)) for _ in range(n_nodes))
        gpu_ids = {
            n: [uuid.UUID(int=rng.getrandbits(128)) for _ in range(GPUS_PER_NODE)] for n in node_ids
        }
        fleet = cls(node_ids, gpu_ids)
        for n, gs in gpu_ids.items():
            for g in gs:
                fleet.layouts[g] = Layout()
                fleet.node_of[g] = n
            fleet.nodes[n] = fleet.capacity(n)
        return fleet

    def capacity(self, node_id: uuid.UUID) -> NodeCapacity:
        gpus = self.gpu_ids[node_id]
        return NodeCapacity(
            node_id, tuple(GpuState(g, i, self.layouts[g]) for i, g in enumerate(gpus))
        )

    def apply(self, bookings: Sequence[Booking], *, add: bool) -> None:
        for b in bookings:
            layout = self.layouts[b.gpu_id]
            self.layouts[b.gpu_id] = layout.add(b.instance) if add else layout.remove(b.instance)
            self.used += b.instance.compute if add else -b.instance.compute
        for node_id in {self.node_of[b.gpu_id] for b in bookings}:
            self.nodes[node_id] = self.capacity(node_id)

    def outcome(self) -> dict[str, Any]:
        layouts = self.layouts.values()
        return {
            "fragmentation": round(fragmentation(layouts), 4),
            "gpus_where_4g_fits": sum(can_place(lay, FOUR_G, 0) for lay in layouts),
            "utilisation": round(self.used / (COMPUTE_SLICES * len(self.layouts)), 3),
        }


def simulate(
    n_nodes: int,
    steps: int,
    seed: int,
    *,
    policy: Policy | None,
    scan_every: int = 0,
    index_class: type[PlacementIndex] | type[previous.PlacementIndex] = PlacementIndex,
) -> dict[str, Any]:
    """One trajectory of `steps` random steps. `policy=None` is an incremental index of
    `index_class` (and then, for the current index, every `scan_every`th request the plain
    scan is also timed on the same state); otherwise `policy` is called on the snapshot.
    The request sequence depends on the seed only, so every policy sees the same requests
    while their decisions agree."""
    fleet = Fleet.new(n_nodes, random.Random(seed))
    rng = random.Random(seed + 1)
    index = index_class()
    if policy is None:
        for n in fleet.node_ids:
            index.add_node(fleet.nodes[n])
    else:
        scan_every = 0
    live: list[tuple[Booking, ...]] = []
    placed = refused = requests = 0
    decide_s: list[float] = []  # per request, refusals included
    scan_s: list[float] = []
    scan_disagreements = 0
    capacity = COMPUTE_SLICES * len(fleet.layouts)
    for _ in range(steps):
        if live and (fleet.used > TARGET_UTILISATION * capacity or rng.random() < 0.3):
            gone = live.pop(rng.randrange(len(live)))
            fleet.apply(gone, add=False)
            if policy is None:
                index.free(list(gone))
            continue
        if rng.random() < 0.25:
            shape, count = None, rng.choice([1, 1, 2])
        else:
            shape, count = rng.choice(MIG_PROFILES), 1
        requests += 1
        sampled = policy is None and scan_every > 0 and requests % scan_every == 0
        if sampled:
            started = time.perf_counter()
            reference = place(list(fleet.nodes.values()), shape, count)
            scan_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        if policy is None:
            decision = index.place(shape, count)
            if decision is not None:
                index.book(decision)
        else:
            decision = policy(list(fleet.nodes.values()), shape, count)
        decide_s.append(time.perf_counter() - started)
        if sampled and reference != decision:
            scan_disagreements += 1
        if decision is None:
            refused += 1
            continue
        fleet.apply(decision.bookings, add=True)
        live.append(decision.bookings)
        placed += 1
    spent = sum(decide_s)
    result: dict[str, Any] = {
        "requests": requests,
        "placements": placed,
        "refused": refused,
        "seconds_deciding": round(spent, 3),
        "placements_per_s": round(placed / spent) if spent else None,
        "decision": summarize_ms(decide_s),
        **fleet.outcome(),
    }
    if scan_s:
        result["scan"] = {
            "samples": len(scan_s),
            # placements per second the scan would sustain on these states (same refusal share)
            "placements_per_s": round(len(scan_s) * placed / requests / sum(scan_s)),
            "decision": summarize_ms(scan_s),
            "disagreements_with_index": scan_disagreements,
        }
    return result


QUALITY_MIXES = {"MIG only": 0.0, "15 % whole GPUs": 0.15, "25 % whole GPUs": 0.25}
MIG_PROFILE_IDS = [p.profile_id for p in MIG_PROFILES]


def small_fleet(rng: random.Random, whole_share: float) -> tuple[list[int], list[Request]]:
    """1-2 nodes of 1-3 GPUs and 10 requests per GPU: whole GPUs (x1, x1, x2 where a node
    has 2 GPUs) with probability `whole_share`, else one slice of any MIG profile."""
    fleet = [rng.randint(1, 3) for _ in range(rng.randint(1, 2))]
    counts = [1, 1, 2] if max(fleet) > 1 else [1]
    requests = [
        Request(None, rng.choice(counts))
        if rng.random() < whole_share
        else Request(rng.choice(MIG_PROFILE_IDS))
        for _ in range(10 * sum(fleet))
    ]
    return fleet, requests


def packing_quality(seeds: int, seed: int) -> dict[str, Any]:
    """Per mix and policy: mean of (requests taken before the first refusal / the optimum's
    longest prefix) over `seeds` fleets, the same ratio in compute slices, the share of
    fleets where the policy reached the optimum, the worst ratio, and on how many fleets it
    took more / fewer requests than the previous policy (the same fleets: a paired count)."""
    policies: dict[str, Any] = {
        "policy": place,
        "previous policy": previous.place,
        "first fit": first_fit,
    }
    out: dict[str, Any] = {}
    for mix, whole_share in QUALITY_MIXES.items():
        taken: dict[str, list[tuple[int, int, int, int]]] = {name: [] for name in policies}
        started = time.perf_counter()
        for i in range(seeds):
            fleet, requests = small_fleet(random.Random(seed * 1_000_003 + i), whole_share)
            prefixes = {n: policy_prefix(fleet, requests, pol) for n, pol in policies.items()}
            best = longest_prefix(fleet, requests, at_least=max(prefixes.values()))
            best_compute = sum(r.compute for r in requests[:best])
            for name, k in prefixes.items():
                taken[name].append((k, best, sum(r.compute for r in requests[:k]), best_compute))
        out[mix] = {
            "seeds": seeds,
            "seconds": round(time.perf_counter() - started, 2),
            "policies": {
                name: {
                    "mean_ratio": round(sum(k / b for k, b, _, _ in rows if b) / len(rows), 4),
                    "compute_ratio": round(
                        sum(c for *_, c, _ in rows) / max(1, sum(bc for *_, bc in rows)), 4
                    ),
                    "optimal_share": round(sum(k == b for k, b, _, _ in rows) / len(rows), 3),
                    "worst_ratio": round(min(k / b for k, b, _, _ in rows if b), 3),
                    "more_than_previous": sum(
                        k > o[0] for (k, *_), o in zip(rows, taken["previous policy"], strict=True)
                    ),
                    "fewer_than_previous": sum(
                        k < o[0] for (k, *_), o in zip(rows, taken["previous policy"], strict=True)
                    ),
                }
                for name, rows in taken.items()
            },
        }
    return out


def main(args: argparse.Namespace) -> int:
    if args.quick:
        args.nodes, args.steps = 200, 10_000
        args.live_requests = min(args.live_requests, 200)
        args.quality_seeds = min(args.quality_seeds, 100)
    results: dict[str, Any] = {
        "benchmark": "scheduler",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": vars(args),
        "environment": environment(),
        "workload": {
            "gpus": args.nodes * GPUS_PER_NODE,
            "whole_gpu_share": 0.25,
            "whole_gpu_counts": [1, 1, 2],
            "mig_profiles": [p.name for p in SKUS["h100-80gb"].profiles],
            "release_probability": 0.3,
            "target_utilisation": TARGET_UTILISATION,
        },
    }
    print(f"scheduler: {args.nodes:,} nodes x {GPUS_PER_NODE} GPUs, {args.steps:,} steps ...")
    indexed = simulate(args.nodes, args.steps, args.seed, policy=None, scan_every=args.scan_every)
    scan = indexed.pop("scan", None)
    print("  index done; previous index ...")
    before = simulate(
        args.nodes, args.steps, args.seed, policy=None, index_class=previous.PlacementIndex
    )
    fit = None
    if not args.no_first_fit:
        print("  first fit ...")
        fit = simulate(args.nodes, args.steps, args.seed, policy=first_fit)
    results["policy_index"] = indexed
    results["policy_scan"] = scan
    results["previous_index"] = before
    results["first_fit"] = fit
    rate = indexed["placements_per_s"] or 0

    def ratio(other: dict[str, Any] | None) -> float | None:
        return (
            round(rate / other["placements_per_s"], 2)
            if other and other["placements_per_s"]
            else None
        )

    results["ratios"] = {
        "index_to_scan": ratio(scan),
        "index_to_previous_index": ratio(before),
        "index_to_first_fit": ratio(fit),
        "fragmentation_previous_minus_policy": round(
            before["fragmentation"] - indexed["fragmentation"], 4
        ),
        "fragmentation_first_fit_minus_policy": round(
            fit["fragmentation"] - indexed["fragmentation"], 4
        )
        if fit
        else None,
    }
    if args.quality_seeds:
        print(
            f"  packing quality: {args.quality_seeds} small fleets per mix against the optimum ..."
        )
        results["packing_quality"] = packing_quality(args.quality_seeds, args.seed)
    if args.live_requests:
        print("  live: create_allocation on PostgreSQL ...")
        results["live"] = run_live(args)
    results["target"] = {
        "placements_per_s": TARGET_PLACEMENTS_PER_S,
        "met": rate >= TARGET_PLACEMENTS_PER_S,
    }
    _report(results)
    print(f"\nresults: {save_results('scheduler', results)}")
    return 0


def _row(name: str, run: dict[str, Any]) -> list[Any]:
    return [
        name,
        run["placements_per_s"],
        run["decision"]["p50_ms"],
        run["decision"]["p99_ms"],
        run["placements"],
        run["refused"],
        f"{run['fragmentation']:.4f}",
        run["gpus_where_4g_fits"],
        run["utilisation"],
    ]


def _quality_cell(q: dict[str, Any]) -> str:
    return (
        f"{q['mean_ratio']:.4f} / {q['compute_ratio']:.4f} / {q['optimal_share']:.0%}"
        f" / +{q['more_than_previous']} -{q['fewer_than_previous']}"
    )


def _report(results: dict[str, Any]) -> None:
    idx, scan, fit = results["policy_index"], results["policy_scan"], results["first_fit"]
    rows = [_row("policy, incremental index", idx)]
    if scan:
        rows.append(
            [
                f"policy, plain scan ({scan['samples']:,} sampled)",
                scan["placements_per_s"],
                scan["decision"]["p50_ms"],
                scan["decision"]["p99_ms"],
                None,
                None,
                "(same)",
                "(same)",
                "(same)",
            ]
        )
    rows.append(_row("previous index (before issue 16)", results["previous_index"]))
    if fit:
        rows.append(_row("first fit", fit))
    args = results["args"]
    print_table(
        f"{args['nodes']:,} nodes x {GPUS_PER_NODE} H100, {args['steps']:,} steps"
        " (decision ms per request; fragmentation at the end)",
        [
            "policy",
            "placements/s",
            "p50 ms",
            "p99 ms",
            "placed",
            "refused",
            "frag",
            "4g fits",
            "util",
        ],
        rows,
    )
    quality = results.get("packing_quality")
    if quality:
        names = list(next(iter(quality.values()))["policies"])
        print_table(
            "packing quality: requests taken before the first refusal / the exact optimum"
            f" (mean over {next(iter(quality.values()))['seeds']} fleets of 1-2 nodes x 1-3 GPUs;"
            " compute-slice ratio; share of fleets at the optimum; fleets with more / fewer"
            " requests taken than the previous policy)",
            ["mix", *names],
            [
                [
                    mix,
                    *(_quality_cell(q["policies"][n]) for n in names),
                ]
                for mix, q in quality.items()
            ],
        )
    live = results.get("live")
    if live:
        print_table(
            f"live: gpuaas create_allocation on PostgreSQL, {live['gpus']:,} GPUs"
            " (whole transaction: quota, booking, outbox events, commit)",
            ["figure", "value"],
            [
                ["allocations/s, sequential", live["sequential"]["allocations_per_s"]],
                [
                    f"allocations/s, {live['concurrent']['concurrency']} concurrent",
                    live["concurrent"]["allocations_per_s"],
                ],
                [
                    "placed / requested",
                    f"{live['sequential']['placed'] + live['concurrent']['placed']}"
                    f" / {live['sequential']['requests'] + live['concurrent']['requests']}",
                ],
                ["index cold build p50 ms (query + build)", live["index_build"]["p50_ms"]],
                [
                    "catch-up after another replica's booking ms",
                    live["catch_up_after_other_replica_ms"],
                ],
                [
                    "decision: generation check + index p50 ms",
                    live["new_path_generation_check_and_place"]["p50_ms"],
                ],
                [
                    "decision, old path: DB snapshot + scan p50 ms",
                    live["old_path_snapshot_and_scan"]["p50_ms"],
                ],
                ["double-booked slices", live["double_booked_slices"]],
            ],
        )
    ratios = results["ratios"]
    target = results["target"]
    print_table(
        "ratios and target",
        ["figure", "value"],
        [
            ["index / plain scan (placements/s)", ratios["index_to_scan"]],
            ["index / previous index (placements/s)", ratios["index_to_previous_index"]],
            ["index / first fit (placements/s)", ratios["index_to_first_fit"]],
            [
                "fragmentation: previous - policy",
                f"{ratios['fragmentation_previous_minus_policy']:+.4f}",
            ],
            [
                "fragmentation: first fit - policy",
                f"{ratios['fragmentation_first_fit_minus_policy']:+.4f}"
                if ratios["fragmentation_first_fit_minus_policy"] is not None
                else None,
            ],
            [
                "scan decisions differing from the index",
                scan["disagreements_with_index"] if scan else None,
            ],
            [
                f"target: >= {TARGET_PLACEMENTS_PER_S:,} placements/s",
                "met" if target["met"] else "NOT met",
            ],
        ],
    )


# --- live: through gpuaas's create_allocation use case on PostgreSQL -------------------


def _status_only(outcome: Any) -> Any:
    """The reply without a body: the status the route would answer."""
    from platformkit.idempotency import StoredResponse

    return StoredResponse(outcome.rejection.status if outcome.rejection else 201, b"{}")


def _seed_fleet(db_url: str, n_nodes: int) -> None:
    """`n_nodes` ready nodes x 8 H100 written in bulk (registration one by one would take
    minutes and is not what is measured)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    nodes = [(uuid.uuid4(), f"bench-{i:05d}") for i in range(n_nodes)]
    with psycopg.connect(db_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO nodes (id, name, provider, state, credential_hash, registered_at,"
            " last_heartbeat_at) VALUES (%s, %s, 'static', 'ready', 'x', %s, %s)",
            [(n, name, now, now) for n, name in nodes],
        )
        cur.executemany(
            "INSERT INTO gpus (id, node_id, index, sku, device_uuid)"
            " VALUES (%s, %s, %s, 'h100-80gb', %s)",
            [
                (uuid.uuid4(), n, i, f"GPU-{uuid.uuid4()}")
                for n, _ in nodes
                for i in range(GPUS_PER_NODE)
            ],
        )
        cur.execute("ANALYZE")  # what autovacuum would have done after such a bulk insert


async def _live(args: argparse.Namespace, db_url: str) -> dict[str, Any]:
    from gpuaas.app.allocations import CreateAllocation, create_allocation
    from gpuaas.app.capacity import LiveIndex, live_index
    from gpuaas.domain.placement import place as scan_place
    from gpuaas.settings import GpuaasSettings
    from gpuaas.store.repository import CapacityRepository
    from platformkit.db import Database

    settings = GpuaasSettings(metering_period_s=60, default_project_quota=10_000)
    rng = random.Random(args.seed + 2)
    requests = []
    for _ in range(args.live_requests):
        if rng.random() < 0.25:
            requests.append((None, rng.choice([1, 1, 2])))
        else:
            requests.append((rng.choice(SKUS["h100-80gb"].profiles).name, 1))
    db = Database(db_url, pool_size=args.live_concurrency + 2)
    other = Database(db_url, pool_size=2)  # a second replica for the cross-replica figure
    try:
        # Cold build of the index (one query + PlacementIndex.build), several times.
        build_s = []
        for _ in range(5):
            fresh = LiveIndex("h100-80gb")
            async with db.unit_of_work() as uow:
                started = time.perf_counter()
                await fresh.current(uow)
                build_s.append(time.perf_counter() - started)
        async with db.unit_of_work() as uow:  # the service's own index, warm
            await live_index(db, "h100-80gb").current(uow)

        async def create(profile: str | None, count: int) -> int:
            command = CreateAllocation(uuid.uuid4(), uuid.uuid4(), "h100-80gb", profile, count)
            return (await create_allocation(db, command, settings, _status_only)).status

        # Sequential, then with concurrent requests (one replica).
        half = len(requests) // 2
        started = time.perf_counter()
        statuses = [await create(p, c) for p, c in requests[:half]]
        sequential_s = time.perf_counter() - started
        queue = list(requests[half:])
        concurrent: list[int] = []

        async def worker() -> None:
            while queue:
                p, c = queue.pop()
                concurrent.append(await create(p, c))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.live_concurrency)))
        concurrent_s = time.perf_counter() - started

        # Catching up after another replica's booking: one generation, one node reloaded.
        await create_allocation(
            other,
            CreateAllocation(uuid.uuid4(), uuid.uuid4(), "h100-80gb", "1g.10gb", 1),
            settings,
            _status_only,
        )
        live = live_index(db, "h100-80gb")
        reloads = live.reloads
        async with db.unit_of_work() as uow:
            started = time.perf_counter()
            await live.current(uow)
            catch_up_s = time.perf_counter() - started
        # This path's decision cost when nothing changed elsewhere: generation check + place.
        index_s = []
        for profile, count in requests[:200]:
            shape = SKUS["h100-80gb"].profile(profile).shape if profile else None
            async with db.unit_of_work() as uow:
                started = time.perf_counter()
                (await live.current(uow)).place(shape, count)
                index_s.append(time.perf_counter() - started)
        # The previous live path: a DB snapshot of every ready node, then the scan.
        scan_s = []
        for profile, count in requests[:20]:
            shape = SKUS["h100-80gb"].profile(profile).shape if profile else None
            async with db.unit_of_work() as uow:
                started = time.perf_counter()
                scan_place(await CapacityRepository(uow).snapshot("h100-80gb"), shape, count)
                scan_s.append(time.perf_counter() - started)
        async with db.unit_of_work() as uow:
            double = await uow.fetch_one(
                "SELECT count(*) AS n FROM (SELECT gpu_id, slice FROM gpu_slices"
                " GROUP BY 1, 2 HAVING count(*) > 1) d"
            )
        return {
            "gpus": args.nodes * GPUS_PER_NODE,
            "index_build": summarize_ms(build_s),
            "sequential": {
                "requests": half,
                "placed": statuses.count(201),
                "allocations_per_s": round(half / sequential_s),
            },
            "concurrent": {
                "requests": len(requests) - half,
                "concurrency": args.live_concurrency,
                "placed": concurrent.count(201),
                "allocations_per_s": round((len(requests) - half) / concurrent_s),
            },
            "catch_up_after_other_replica_ms": round(catch_up_s * 1000, 2),
            "nodes_reloaded_for_it": live.reloads - reloads,
            "old_path_snapshot_and_scan": summarize_ms(scan_s),
            "new_path_generation_check_and_place": summarize_ms(index_s),
            "double_booked_slices": double["n"],
            "statuses": {str(k): v for k, v in Counter([*statuses, *concurrent]).items()},
        }
    finally:
        await db.dispose()
        await other.dispose()


def run_live(args: argparse.Namespace) -> dict[str, Any]:
    from devstack.infra import ensure_infra
    from platformkit.migrate import apply_migrations
    from platformkit.service import KIT_MIGRATIONS

    infra = ensure_infra()
    with scratch_database(infra.pg_admin_url) as db_url:
        apply_migrations(db_url, [KIT_MIGRATIONS, ("gpuaas", "gpuaas.store.migrations")])
        _seed_fleet(db_url, args.nodes)
        return asyncio.run(_live(args, db_url))


def headlines(results: dict[str, Any]) -> Summary:
    """The common schema (bench/report.py): the index against the plain scan, and the live
    use case with concurrent clients against the same use case one request at a time."""
    idx, scan = results["policy_index"], results["policy_scan"]
    rows = [
        Headline(
            "placement index",
            idx["placements_per_s"],
            "placements/s",
            baseline=scan["placements_per_s"] if scan else None,
            baseline_name="plain scan",
            target=TARGET_PLACEMENTS_PER_S,
        )
    ]
    live = results.get("live")
    if live:
        concurrent = live["concurrent"]
        rows.append(
            Headline(
                f"create_allocation, {concurrent['concurrency']} concurrent, {live['gpus']:,} GPUs",
                concurrent["allocations_per_s"],
                "allocations/s",
                baseline=live["sequential"]["allocations_per_s"],
                baseline_name="sequential",
                target=TARGET_LIVE_ALLOCATIONS_PER_S,
            )
        )
        rows.append(
            Headline(
                "double-booked slices", live["double_booked_slices"], "", better="lower", target=0
            )
        )
    return Summary(headlines=rows, latencies={"index decision": idx["decision"]})
