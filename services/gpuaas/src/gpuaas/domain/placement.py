"""Placement policy: where a request for whole GPUs or MIG slices goes.

- Whole GPUs (count n): a node of the SKU with at least n empty GPUs; best fit (the node
  with the fewest empty GPUs that still fits), so big multi-GPU requests keep finding
  whole nodes.
- MIG slices (count n, all on one node): each slice goes to the (GPU, start) that
  1. prefers a GPU already in MIG use over an empty one (empty GPUs stay free for whole-GPU
     and 7g requests), then
  2. best fit: the GPU with the most compute already used (fill GPUs up rather than
     sprinkle small slices over many), then
  3. the start that leaves the highest `headroom` on that GPU (keeps 4g/3g placeable;
     a 1g goes to slice 6, not 0, so a 4g still fits at 0), then
  4. the lowest GPU index and start (deterministic).

The policy works on a snapshot; the database's unique (gpu, memory slice) rows are what
make two schedulers racing on the same snapshot unable to double-book.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from gpuaas.domain.catalog import SHAPES, ProfileShape
from gpuaas.domain.geometry import (
    WHOLE_GPU,
    Instance,
    Layout,
    can_place_profile,
    headroom,
    instance_of,
)


@dataclass(frozen=True, slots=True)
class GpuState:
    gpu_id: uuid.UUID
    index: int
    layout: Layout


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    node_id: uuid.UUID
    gpus: tuple[GpuState, ...]


@dataclass(frozen=True, slots=True)
class Booking:
    gpu_id: uuid.UUID
    gpu_index: int
    instance: Instance


@dataclass(frozen=True, slots=True)
class Decision:
    node_id: uuid.UUID
    bookings: tuple[Booking, ...]


@lru_cache(maxsize=65536)
def best_start(instances: tuple[Instance, ...], profile_id: int) -> tuple[int, int] | None:
    """(start, headroom after) of the best start for a profile on a layout, or None."""
    shape = SHAPES[profile_id]
    best: tuple[int, int] | None = None
    for start in shape.starts:
        if not can_place_profile(instances, profile_id, start):
            continue
        after = headroom(tuple(sorted((*instances, instance_of(shape, start)))))
        if best is None or after > best[1]:
            best = (start, after)
    return best


SlotKey = tuple[int, int, int]


@lru_cache(maxsize=65536)
def slot_score(instances: tuple[Instance, ...], profile_id: int) -> tuple[SlotKey, int] | None:
    """(preference key, start) of a profile on a layout, or None where it does not fit.

    The key is the policy's rules 1-3 (lower is better): an empty GPU after a used one,
    then the most compute already used, then the most headroom left. The scan and the
    index rank GPUs by this one function, so they cannot drift apart."""
    found = best_start(instances, profile_id)
    if found is None:
        return None
    start, after = found
    used = sum(i.compute for i in instances)
    return (int(not instances), -used, -after), start


def place_whole(nodes: Sequence[NodeCapacity], count: int) -> Decision | None:
    best: tuple[int, NodeCapacity, list[GpuState]] | None = None
    for node in nodes:
        empty = [g for g in node.gpus if g.layout.is_empty]
        if len(empty) >= count and (best is None or len(empty) < best[0]):
            best = (len(empty), node, empty)
    if best is None:
        return None
    _, node, empty = best
    chosen = sorted(empty, key=lambda g: g.index)[:count]
    return Decision(node.node_id, tuple(Booking(g.gpu_id, g.index, WHOLE_GPU) for g in chosen))


def mig_on_node(node: NodeCapacity, shape: ProfileShape, count: int) -> list[Booking] | None:
    """`count` slices of a profile on one node, each where rules 1-4 put it, or None."""
    layouts = {g.gpu_id: g.layout for g in node.gpus}
    bookings: list[Booking] = []
    for _ in range(count):
        choice: tuple[tuple[int, int, int, int, int], GpuState, int] | None = None
        for gpu in node.gpus:
            scored = slot_score(layouts[gpu.gpu_id].instances, shape.profile_id)
            if scored is None:
                continue
            (empty, used, after), start = scored
            key = (empty, used, after, gpu.index, start)
            if choice is None or key < choice[0]:
                choice = (key, gpu, start)
        if choice is None:
            return None
        _, gpu, start = choice
        instance = instance_of(shape, start)
        layouts[gpu.gpu_id] = layouts[gpu.gpu_id].add(instance)
        bookings.append(Booking(gpu.gpu_id, gpu.index, instance))
    return bookings


def place_mig(nodes: Sequence[NodeCapacity], shape: ProfileShape, count: int) -> Decision | None:
    """Across nodes the same preference applies to the first slice; the node whose best
    slot scores best wins (partially used nodes first)."""
    ranked: list[tuple[SlotKey, NodeCapacity]] = []
    for node in nodes:
        best_key: SlotKey | None = None
        for gpu in node.gpus:
            scored = slot_score(gpu.layout.instances, shape.profile_id)
            if scored is not None and (best_key is None or scored[0] < best_key):
                best_key = scored[0]
        if best_key is not None:
            ranked.append((best_key, node))
    ranked.sort(key=lambda kn: kn[0])
    for _, node in ranked:
        bookings = mig_on_node(node, shape, count)
        if bookings is not None:
            return Decision(node.node_id, tuple(bookings))
    return None


def place(
    nodes: Sequence[NodeCapacity], profile: ProfileShape | None, count: int
) -> Decision | None:
    if profile is None:
        return place_whole(nodes, count)
    return place_mig(nodes, profile, count)
