"""An incremental index over a fleet's GPU layouts that makes the same decisions as
`placement.place` (over nodes in node-id order) without scanning every GPU.

GPUs are bucketed by layout; a fleet has few distinct layouts (hundreds) even with
thousands of GPUs, so a single-slice MIG request scores each distinct layout once (the
score is memoized) and picks the first GPU, in node-id order then index, among the best.
Whole-GPU requests use per-node counts of empty GPUs. Multi-slice MIG requests (rare)
fall back to the scan. A property test checks decision-for-decision equality with
`place`.

`build` constructs the index in one pass over (node, gpu, index, layout) rows, without the
per-GPU bookkeeping of `set_node`, so a scheduler replica can load 8,000 GPUs in a few
milliseconds; `set_node` / `remove_node` then replace single nodes as they change.
"""

import uuid
from collections import defaultdict
from collections.abc import Iterable

from gpuaas.domain.catalog import ProfileShape
from gpuaas.domain.geometry import WHOLE_GPU, Instance, Layout, instance_of
from gpuaas.domain.placement import (
    Booking,
    Decision,
    GpuState,
    NodeCapacity,
    best_start,
    place,
)

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
