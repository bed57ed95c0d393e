"""Placement policy: where a request for whole GPUs or MIG slices goes.

- Whole GPUs (count n): a node of the SKU with at least n empty GPUs; best fit (the node
  with the fewest empty GPUs that still fits), so big multi-GPU requests keep finding
  whole nodes.
- MIG slices (count n, all on one node): on each GPU the slice takes the start that leaves
  the highest `geometry.prospects` (the GPU's expected further single slices before a
  refusal), then the highest `headroom`, then the lowest start; and it goes to the GPU that
  1. is already in MIG use rather than empty (empty GPUs stay free for whole-GPU and 7g
     requests), then
  2. loses the least `prospects` by it (a used GPU where the slice would block the larger
     profile still free there comes after one where it fits in without), then
  3. has the most compute already used (fill GPUs up), then
  4. for an empty GPU, is on the node with the fewest empty GPUs (nodes with many stay
     whole for multi-GPU requests), then the lowest node id, GPU index and start.

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
    instance_of,
    prospects,
    room,
    room_after,
    room_headroom,
    room_prospects,
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
    """(start, prospects after) of the best start for a profile on a layout, or None:
    the highest `prospects` after, then the highest `headroom`, then the lowest start."""
    state = room(instances)
    if state is None:
        return None
    shape = SHAPES[profile_id]
    best: tuple[int, tuple[int, int]] | None = None
    for start in shape.starts:
        after = room_after(state, shape, start)
        if after is None:
            continue
        value = (room_prospects(after), room_headroom(after))
        if best is None or value > best[1]:
            best = (start, value)
    return None if best is None else (best[0], best[1][0])


SlotKey = tuple[int, int, int]


@lru_cache(maxsize=65536)
def slot_score(instances: tuple[Instance, ...], profile_id: int) -> tuple[SlotKey, int] | None:
    """(preference key, start) of a profile on a layout, or None where it does not fit.

    The key is rules 1-3 (lower is better): a used GPU before an empty one, then the
    smallest loss of `prospects`, then the most compute already used. The scan and the
    index rank GPUs by this one function, so they cannot drift apart."""
    found = best_start(instances, profile_id)
    if found is None:
        return None
    start, after = found
    used = sum(i.compute for i in instances)
    return (int(not instances), prospects(instances) - after, -used), start


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
            (empty, loss, used), start = scored
            key = (empty, loss, used, gpu.index, start)
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
    slot scores best wins (partially used nodes first; for an empty GPU, the node with the
    fewest empty GPUs, as whole-GPU best fit does); then node order."""
    ranked: list[tuple[tuple[int, int, int, int], NodeCapacity]] = []
    for node in nodes:
        best_key: tuple[int, int, int, int] | None = None
        empty = sum(g.layout.is_empty for g in node.gpus)
        for gpu in node.gpus:
            scored = slot_score(gpu.layout.instances, shape.profile_id)
            if scored is None:
                continue
            key = (*scored[0], empty if gpu.layout.is_empty else 0)
            if best_key is None or key < best_key:
                best_key = key
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
