"""Placement throughput and fragmentation of the pure policy (no database).

    uv run python services/gpuaas/scripts/measure_placement.py [--nodes 1000] [--steps 100000]

A mixed workload (MIG profiles of every size, whole GPUs x1/x2) of random allocate/release
steps on N nodes x 8 H100s, kept around a target utilisation; reports placements per
second and fragmentation (geometry.fragmentation) for the policy (through the incremental
PlacementIndex, and as the plain scan the service runs on each snapshot) and for first-fit.
"""

import argparse
import random
import time
import uuid

from gpuaas.domain.catalog import SHAPES, SKUS
from gpuaas.domain.geometry import Layout, can_place, fragmentation, instance_of
from gpuaas.domain.placement import Booking, Decision, GpuState, NodeCapacity, place
from gpuaas.domain.placement_index import PlacementIndex

PROFILES = [p.shape for p in SKUS["h100-80gb"].profiles]


def first_fit(nodes, shape, count):
    if shape is None:
        return place(nodes, None, count)
    for node in nodes:
        for gpu in node.gpus:
            for start in shape.starts:
                if can_place(gpu.layout, shape, start):
                    inst = instance_of(shape, start)
                    return Decision(node.node_id, (Booking(gpu.gpu_id, gpu.index, inst),))
    return None


def run(policy, n_nodes, steps, seed=7, indexed=False):
    rng = random.Random(seed)
    node_ids = [uuid.uuid4() for _ in range(n_nodes)]
    gpu_ids = {n: [uuid.uuid4() for _ in range(8)] for n in node_ids}
    layouts = {g: Layout() for gs in gpu_ids.values() for g in gs}
    live = []
    node_of = {g: n for n, gs in gpu_ids.items() for g in gs}

    def capacity(n):
        return NodeCapacity(n, tuple(GpuState(g, i, layouts[g]) for i, g in enumerate(gpu_ids[n])))

    nodes = {n: capacity(n) for n in node_ids}
    index = PlacementIndex()
    for n in node_ids:
        index.add_node(nodes[n])
    placed = failed = 0
    used = 0
    spent = 0.0
    for _ in range(steps):
        if live and (used > 0.85 * 7 * len(layouts) or rng.random() < 0.3):
            gone = live.pop(rng.randrange(len(live)))
            for b in gone:
                layouts[b.gpu_id] = layouts[b.gpu_id].remove(b.instance)
                used -= b.instance.compute
                if not indexed:
                    nodes[node_of[b.gpu_id]] = capacity(node_of[b.gpu_id])
            if indexed:
                index.free(gone)
            continue
        if rng.random() < 0.25:
            shape, count = None, rng.choice([1, 1, 2])
        else:
            shape, count = rng.choice(PROFILES), 1
        t = time.perf_counter()
        if indexed:
            decision = index.place(shape, count)
            if decision is not None:
                index.book(decision)
        else:
            decision = policy(list(nodes.values()), shape, count)
        spent += time.perf_counter() - t
        if decision is None:
            failed += 1
            continue
        for b in decision.bookings:
            layouts[b.gpu_id] = layouts[b.gpu_id].add(b.instance)
            used += b.instance.compute
        if not indexed:
            nodes[decision.node_id] = capacity(decision.node_id)
        live.append(list(decision.bookings))
        placed += 1
    large = sum(can_place(lay, SHAPES[5], 0) for lay in layouts.values())
    return {
        "placements": placed,
        "refused": failed,
        "placements_per_s": round(placed / spent) if spent else None,
        "fragmentation": round(fragmentation(layouts.values()), 4),
        "gpus_where_4g_fits": large,
        "utilisation": round(sum(x.compute_used for x in layouts.values()) / (7 * len(layouts)), 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--only", choices=["indexed", "scan", "first-fit"])
    args = parser.parse_args()
    runs = {
        "indexed": lambda: run(None, args.nodes, args.steps, indexed=True),
        "scan": lambda: run(place, args.nodes, args.steps),
        "first-fit": lambda: run(first_fit, args.nodes, args.steps),
    }
    for name, measure in runs.items():
        if args.only in (None, name):
            print(name, measure(), flush=True)
