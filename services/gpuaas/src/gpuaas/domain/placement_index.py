"""An incremental index over a fleet's GPU layouts that makes the same decisions as
`placement.place` without scanning every GPU.

GPUs are bucketed by layout; a fleet has few distinct layouts (hundreds) even with
thousands of GPUs, so a single-slice MIG request scores each distinct layout once (the
score is memoized) and picks the first GPU, in node order then index, among the best.
Whole-GPU requests use per-node counts of empty GPUs. Multi-slice MIG requests (rare)
fall back to the scan. A property test checks decision-for-decision equality with
`place`.
"""

import uuid
from collections import defaultdict

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

_Slot = tuple[int, int, uuid.UUID]  # (node order, gpu index, gpu id)


class PlacementIndex:
    def __init__(self) -> None:
        self._order: dict[uuid.UUID, int] = {}
        self._node_of_order: list[uuid.UUID] = []
        self._gpus: dict[uuid.UUID, tuple[uuid.UUID, int]] = {}  # gpu -> (node, index)
        self._layout: dict[uuid.UUID, Layout] = {}
        self._by_layout: dict[tuple[Instance, ...], set[_Slot]] = defaultdict(set)
        self._empty: dict[uuid.UUID, int] = {}
        self._node_gpus: dict[uuid.UUID, list[tuple[int, uuid.UUID]]] = {}
        # Smallest slot per bucket, recomputed only when that slot leaves the bucket.
        self._min: dict[tuple[Instance, ...], _Slot] = {}

    def add_node(self, node: NodeCapacity) -> None:
        self._order[node.node_id] = len(self._node_of_order)
        self._node_of_order.append(node.node_id)
        self._empty[node.node_id] = 0
        self._node_gpus[node.node_id] = sorted((g.index, g.gpu_id) for g in node.gpus)
        for gpu in node.gpus:
            self._gpus[gpu.gpu_id] = (node.node_id, gpu.index)
            self._layout[gpu.gpu_id] = Layout()
            self._enter((), self._slot(gpu.gpu_id))
            self._empty[node.node_id] += 1
            if not gpu.layout.is_empty:
                self._set(gpu.gpu_id, gpu.layout)

    def _slot(self, gpu_id: uuid.UUID) -> _Slot:
        node_id, index = self._gpus[gpu_id]
        return (self._order[node_id], index, gpu_id)

    def _set(self, gpu_id: uuid.UUID, layout: Layout) -> None:
        old = self._layout[gpu_id]
        slot = self._slot(gpu_id)
        bucket = self._by_layout[old.instances]
        bucket.discard(slot)
        if not bucket:
            del self._by_layout[old.instances]
            self._min.pop(old.instances, None)
        elif self._min.get(old.instances) == slot:
            del self._min[old.instances]
        self._enter(layout.instances, slot)
        node_id = self._gpus[gpu_id][0]
        self._empty[node_id] += int(layout.is_empty) - int(old.is_empty)
        self._layout[gpu_id] = layout

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
        gpus: dict[uuid.UUID, list[GpuState]] = defaultdict(list)
        for gpu_id, (node_id, index) in self._gpus.items():
            gpus[node_id].append(GpuState(gpu_id, index, self._layout[gpu_id]))
        return [
            NodeCapacity(n, tuple(sorted(gpus[n], key=lambda g: g.index)))
            for n in self._node_of_order
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
        order, index, gpu_id = slot
        node_id = self._node_of_order[order]
        return Decision(node_id, (Booking(gpu_id, index, instance_of(profile, start)),))

    def _place_whole(self, count: int) -> Decision | None:
        best: tuple[int, int] | None = None
        for node_id, empty in self._empty.items():
            if empty >= count and (best is None or (empty, self._order[node_id]) < best):
                best = (empty, self._order[node_id])
        if best is None:
            return None
        node_id = self._node_of_order[best[1]]
        free = [(i, g) for i, g in self._node_gpus[node_id] if self._layout[g].is_empty][:count]
        return Decision(node_id, tuple(Booking(g, i, WHOLE_GPU) for i, g in free))
