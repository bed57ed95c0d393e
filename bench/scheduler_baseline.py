"""The placement policy and index as they were before issue 16 (main at b097ac7), frozen
here as the scheduler benchmark's same-run baseline; gpuaas does not use this module.

Left unchanged on purpose (only the imports differ): the index that takes `min()` over a
layout bucket whenever the bucket's smallest GPU leaves it, and the policy that prefers the
fullest used GPU and the start with the most `headroom`. `bench/scheduler.py` runs it on
the same request sequence as the current index (its decisions differ, so it follows its own
trajectory) for placements/s and packing quality, old against new.
"""

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import lru_cache

from gpuaas.domain.catalog import SHAPES, ProfileShape
from gpuaas.domain.geometry import WHOLE_GPU, Instance, Layout, can_place_profile, instance_of
from gpuaas.domain.placement import Booking, Decision, GpuState, NodeCapacity


@lru_cache(maxsize=65536)
def headroom(instances: tuple[Instance, ...]) -> int:
    """How much room a layout leaves for future requests, weighted towards large profiles.

    Sum over profiles still placeable of (compute x memory slices), plus the number of
    (profile, start) options left. A 7g or 4g that can still be placed dominates the score,
    so the policy keeps large profiles placeable as long as it can.
    """
    score = 0
    for shape in SHAPES.values():
        options = sum(can_place_profile(instances, shape.profile_id, s) for s in shape.starts)
        if options:
            score += shape.compute * shape.memory * 4 + options
    return score


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


def _place_mig_on_node(node: NodeCapacity, shape: ProfileShape, count: int) -> list[Booking] | None:
    layouts = {g.gpu_id: g.layout for g in node.gpus}
    bookings: list[Booking] = []
    for _ in range(count):
        choice: tuple[tuple[int, int, int, int, int], GpuState, int] | None = None
        for gpu in node.gpus:
            layout = layouts[gpu.gpu_id]
            found = best_start(layout.instances, shape.profile_id)
            if found is None:
                continue
            start, after = found
            key = (int(layout.is_empty), -layout.compute_used, -after, gpu.index, start)
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
    ranked: list[tuple[tuple[int, int, int], NodeCapacity]] = []
    for node in nodes:
        best_key: tuple[int, int, int] | None = None
        for gpu in node.gpus:
            found = best_start(gpu.layout.instances, shape.profile_id)
            if found is not None:
                key = (int(gpu.layout.is_empty), -gpu.layout.compute_used, -found[1])
                if best_key is None or key < best_key:
                    best_key = key
        if best_key is not None:
            ranked.append((best_key, node))
    ranked.sort(key=lambda kn: kn[0])
    for _, node in ranked:
        bookings = _place_mig_on_node(node, shape, count)
        if bookings is not None:
            return Decision(node.node_id, tuple(bookings))
    return None


def place(
    nodes: Sequence[NodeCapacity], profile: ProfileShape | None, count: int
) -> Decision | None:
    if profile is None:
        return place_whole(nodes, count)
    return place_mig(nodes, profile, count)


_Slot = tuple[uuid.UUID, int, uuid.UUID]  # (node id, gpu index, gpu id)


class PlacementIndex:
    def __init__(self) -> None:
        self._gpus: dict[uuid.UUID, tuple[uuid.UUID, int]] = {}  # gpu -> (node, index)
        self._layout: dict[uuid.UUID, Layout] = {}
        self._by_layout: dict[tuple[Instance, ...], set[_Slot]] = defaultdict(set)
        self._empty: dict[uuid.UUID, int] = {}
        self._node_gpus: dict[uuid.UUID, list[tuple[int, uuid.UUID]]] = {}
        # Smallest slot per bucket, recomputed only when that slot leaves the bucket.
        self._min: dict[tuple[Instance, ...], _Slot] = {}

    @classmethod
    def build(cls, gpus: Iterable[tuple[uuid.UUID, uuid.UUID, int, Layout]]) -> "PlacementIndex":
        """The index of (node id, gpu id, gpu index, layout) rows, in one pass."""
        index = cls()
        by_layout = index._by_layout
        layout_of = index._layout
        gpu_of = index._gpus
        node_gpus: dict[uuid.UUID, list[tuple[int, uuid.UUID]]] = defaultdict(list)
        empty: dict[uuid.UUID, int] = defaultdict(int)
        for node_id, gpu_id, gpu_index, layout in gpus:
            gpu_of[gpu_id] = (node_id, gpu_index)
            layout_of[gpu_id] = layout
            by_layout[layout.instances].add((node_id, gpu_index, gpu_id))
            node_gpus[node_id].append((gpu_index, gpu_id))
            empty[node_id] += not layout.instances
        for listing in node_gpus.values():
            listing.sort()
        index._node_gpus = dict(node_gpus)
        index._empty = dict(empty)
        return index

    @property
    def node_ids(self) -> set[uuid.UUID]:
        return set(self._node_gpus)

    def add_node(self, node: NodeCapacity) -> None:
        self.set_node(node)

    def set_node(self, node: NodeCapacity) -> None:
        """Insert the node, or replace everything known about it."""
        self.remove_node(node.node_id)
        self._empty[node.node_id] = 0
        self._node_gpus[node.node_id] = sorted((g.index, g.gpu_id) for g in node.gpus)
        for gpu in node.gpus:
            self._gpus[gpu.gpu_id] = (node.node_id, gpu.index)
            self._layout[gpu.gpu_id] = gpu.layout
            self._enter(gpu.layout.instances, self._slot(gpu.gpu_id))
            self._empty[node.node_id] += int(gpu.layout.is_empty)

    def remove_node(self, node_id: uuid.UUID) -> None:
        for _, gpu_id in self._node_gpus.pop(node_id, ()):
            self._leave(self._layout.pop(gpu_id).instances, self._slot(gpu_id))
            del self._gpus[gpu_id]
        self._empty.pop(node_id, None)

    def _slot(self, gpu_id: uuid.UUID) -> _Slot:
        node_id, index = self._gpus[gpu_id]
        return (node_id, index, gpu_id)

    def _set(self, gpu_id: uuid.UUID, layout: Layout) -> None:
        old = self._layout[gpu_id]
        slot = self._slot(gpu_id)
        self._leave(old.instances, slot)
        self._enter(layout.instances, slot)
        node_id = self._gpus[gpu_id][0]
        self._empty[node_id] += int(layout.is_empty) - int(old.is_empty)
        self._layout[gpu_id] = layout

    def _leave(self, key: tuple[Instance, ...], slot: _Slot) -> None:
        bucket = self._by_layout[key]
        bucket.discard(slot)
        if not bucket:
            del self._by_layout[key]
            self._min.pop(key, None)
        elif self._min.get(key) == slot:
            del self._min[key]

    def _enter(self, key: tuple[Instance, ...], slot: _Slot) -> None:
        self._by_layout[key].add(slot)
        current = self._min.get(key)
        if current is not None and slot < current:
            self._min[key] = slot

    def _first(self, key: tuple[Instance, ...]) -> _Slot:
        slot = self._min.get(key)
        if slot is None:
            slot = self._min[key] = min(self._by_layout[key])
        return slot

    def book(self, decision: Decision) -> None:
        for b in decision.bookings:
            self._set(b.gpu_id, self._layout[b.gpu_id].add(b.instance))

    def free(self, bookings: list[Booking]) -> None:
        for b in bookings:
            self._set(b.gpu_id, self._layout[b.gpu_id].remove(b.instance))

    def snapshot(self) -> list[NodeCapacity]:
        """Every node, in node-id order (the order the scan's tie-breaks assume)."""
        return [
            NodeCapacity(n, tuple(GpuState(g, i, self._layout[g]) for i, g in self._node_gpus[n]))
            for n in sorted(self._node_gpus)
        ]

    def place(self, profile: ProfileShape | None, count: int) -> Decision | None:
        if profile is None:
            return self._place_whole(count)
        if count != 1:
            return place(self.snapshot(), profile, count)
        scored = []
        for instances in self._by_layout:
            found = best_start(instances, profile.profile_id)
            if found is not None:
                used = sum(i.compute for i in instances)
                scored.append(((int(not instances), -used, -found[1]), instances, found[0]))
        if not scored:
            return None
        top = min(key for key, _, _ in scored)
        slot, start = min((self._first(inst), st) for key, inst, st in scored if key == top)
        node_id, index, gpu_id = slot
        return Decision(node_id, (Booking(gpu_id, index, instance_of(profile, start)),))

    def _place_whole(self, count: int) -> Decision | None:
        best: tuple[int, uuid.UUID] | None = None
        for node_id, empty in self._empty.items():
            if empty >= count and (best is None or (empty, node_id) < best):
                best = (empty, node_id)
        if best is None:
            return None
        node_id = best[1]
        free = [(i, g) for i, g in self._node_gpus[node_id] if self._layout[g].is_empty][:count]
        return Decision(node_id, tuple(Booking(g, i, WHOLE_GPU) for i, g in free))
