"""An incremental index over a fleet's GPU layouts that makes the same decisions as
`placement.place` (over nodes in node-id order) without scanning every GPU.

Structures, each kept ordered so that no decision scans a whole bucket:

- GPUs are bucketed by layout; a fleet has few distinct layouts (hundreds) even with
  thousands of GPUs. Each bucket is a sorted list of GPU ranks, `node_id.int << 32 | index`
  (the scan's tie-break order as one int), so its first GPU is `bucket[0]` and a GPU joins
  or leaves it by bisection.
- Per MIG profile, the distinct layouts where it fits, grouped by `slot_score`'s key
  (`_Ranking`): the sorted distinct keys and, per key, the layouts and their best start. A
  single-slice request reads the lowest key and takes the lowest-ranked first GPU among that
  key's layouts (usually one). A layout enters these rankings when its bucket fills and
  leaves when it empties, so a booking costs two bisections per profile at most.
- Whole GPUs: nodes grouped by their number of empty GPUs (sorted node ints), so best fit
  is the first node of the smallest group with enough empty GPUs.
- Multi-slice MIG requests (rare) rank nodes by their best first-slice key exactly as the
  scan does, by walking the rankings in key order, and run the scan's per-node placement on
  those nodes only, in that order, until one takes every slice.

A property test checks decision-for-decision equality with `place`, also after `build`,
`set_node` and `remove_node`.

`build` constructs the index in one pass over (node, gpu, index, layout) rows, so a
scheduler replica can load 8,000 GPUs in a few milliseconds; `set_node` / `remove_node`
then replace single nodes as they change.
"""

import heapq
import uuid
from bisect import bisect_left, insort
from collections import defaultdict
from collections.abc import Iterable, Iterator

from gpuaas.domain.catalog import SHAPES, ProfileShape
from gpuaas.domain.geometry import WHOLE_GPU, Instance, Layout, instance_of
from gpuaas.domain.placement import (
    Booking,
    Decision,
    GpuState,
    NodeCapacity,
    SlotKey,
    mig_on_node,
    slot_score,
)

_Key = tuple[Instance, ...]  # a layout's instances: the bucket key
_INDEX_BITS = 32


def _rank(node_id: uuid.UUID, index: int) -> int:
    """(node id, gpu index) as one int with the same order."""
    if not 0 <= index < 1 << _INDEX_BITS:
        raise ValueError(f"gpu index {index} out of range")
    return node_id.int << _INDEX_BITS | index


class _Ranking:
    """For one profile: the distinct layouts it fits on, grouped by preference key."""

    __slots__ = ("keys", "layouts", "profile_id")

    def __init__(self, profile_id: int) -> None:
        self.profile_id = profile_id
        self.keys: list[SlotKey] = []  # sorted, distinct
        self.layouts: dict[SlotKey, dict[_Key, int]] = {}  # key -> {layout: best start}

    def enter(self, layout: _Key) -> None:
        scored = slot_score(layout, self.profile_id)
        if scored is None:
            return
        key, start = scored
        group = self.layouts.get(key)
        if group is None:
            group = self.layouts[key] = {}
            insort(self.keys, key)
        group[layout] = start

    def leave(self, layout: _Key) -> None:
        scored = slot_score(layout, self.profile_id)
        if scored is None:
            return
        key = scored[0]
        group = self.layouts[key]
        del group[layout]
        if not group:
            del self.layouts[key]
            del self.keys[bisect_left(self.keys, key)]


class PlacementIndex:
    def __init__(self) -> None:
        self._gpus: dict[uuid.UUID, tuple[uuid.UUID, int]] = {}  # gpu -> (node, index)
        self._rank: dict[uuid.UUID, int] = {}  # gpu -> rank
        self._gpu_at: dict[int, uuid.UUID] = {}  # rank -> gpu
        self._layout: dict[uuid.UUID, Layout] = {}
        self._buckets: dict[_Key, list[int]] = {}  # layout -> sorted ranks
        self._rankings = {pid: _Ranking(pid) for pid in SHAPES}
        self._node_gpus: dict[uuid.UUID, list[tuple[int, uuid.UUID]]] = {}  # sorted by index
        self._empty: dict[uuid.UUID, int] = {}  # node -> empty GPUs
        self._by_empty: dict[int, list[int]] = defaultdict(list)  # empty GPUs -> node ints
        self._node_at: dict[int, uuid.UUID] = {}  # node int -> node id

    @classmethod
    def build(cls, gpus: Iterable[tuple[uuid.UUID, uuid.UUID, int, Layout]]) -> "PlacementIndex":
        """The index of (node id, gpu id, gpu index, layout) rows, in one pass."""
        index = cls()
        gpu_of, rank_of, gpu_at, layout_of = index._gpus, index._rank, index._gpu_at, index._layout
        buckets: dict[_Key, list[int]] = defaultdict(list)
        node_gpus: dict[uuid.UUID, list[tuple[int, uuid.UUID]]] = defaultdict(list)
        empty: dict[uuid.UUID, int] = defaultdict(int)
        for node_id, gpu_id, gpu_index, layout in gpus:
            rank = _rank(node_id, gpu_index)
            gpu_of[gpu_id] = (node_id, gpu_index)
            rank_of[gpu_id] = rank
            gpu_at[rank] = gpu_id
            layout_of[gpu_id] = layout
            buckets[layout.instances].append(rank)
            node_gpus[node_id].append((gpu_index, gpu_id))
            empty[node_id] += not layout.instances
        for key, ranks in buckets.items():
            ranks.sort()
            index._buckets[key] = ranks
            for ranking in index._rankings.values():
                ranking.enter(key)
        for node_id, listing in node_gpus.items():
            listing.sort()
            index._node_gpus[node_id] = listing
            index._node_at[node_id.int] = node_id
            index._empty[node_id] = empty[node_id]
            index._by_empty[empty[node_id]].append(node_id.int)
        for nodes in index._by_empty.values():
            nodes.sort()
        return index

    @property
    def node_ids(self) -> set[uuid.UUID]:
        return set(self._node_gpus)

    def add_node(self, node: NodeCapacity) -> None:
        self.set_node(node)

    def set_node(self, node: NodeCapacity) -> None:
        """Insert the node, or replace everything known about it."""
        self.remove_node(node.node_id)
        node_id = node.node_id
        self._node_gpus[node_id] = sorted((g.index, g.gpu_id) for g in node.gpus)
        self._node_at[node_id.int] = node_id
        for gpu in node.gpus:
            rank = _rank(node_id, gpu.index)
            self._gpus[gpu.gpu_id] = (node_id, gpu.index)
            self._rank[gpu.gpu_id] = rank
            self._gpu_at[rank] = gpu.gpu_id
            self._layout[gpu.gpu_id] = gpu.layout
            self._enter(gpu.layout.instances, rank)
        self._empty[node_id] = empty = sum(g.layout.is_empty for g in node.gpus)
        insort(self._by_empty[empty], node_id.int)

    def remove_node(self, node_id: uuid.UUID) -> None:
        listing = self._node_gpus.pop(node_id, None)
        if listing is None:
            return
        for _, gpu_id in listing:
            rank = self._rank.pop(gpu_id)
            self._leave(self._layout.pop(gpu_id).instances, rank)
            del self._gpus[gpu_id], self._gpu_at[rank]
        self._drop_from(self._by_empty, self._empty.pop(node_id), node_id.int)
        del self._node_at[node_id.int]

    @staticmethod
    def _drop_from(groups: dict[int, list[int]], group: int, item: int) -> None:
        members = groups[group]
        del members[bisect_left(members, item)]
        if not members:
            del groups[group]

    def _set(self, gpu_id: uuid.UUID, layout: Layout) -> None:
        old = self._layout[gpu_id]
        rank = self._rank[gpu_id]
        self._leave(old.instances, rank)
        self._enter(layout.instances, rank)
        self._layout[gpu_id] = layout
        change = int(not layout.instances) - int(not old.instances)
        if change:
            node_id = self._gpus[gpu_id][0]
            empty = self._empty[node_id]
            self._drop_from(self._by_empty, empty, node_id.int)
            self._empty[node_id] = empty + change
            insort(self._by_empty[empty + change], node_id.int)

    def _leave(self, key: _Key, rank: int) -> None:
        bucket = self._buckets[key]
        del bucket[bisect_left(bucket, rank)]
        if not bucket:
            del self._buckets[key]
            for ranking in self._rankings.values():
                ranking.leave(key)

    def _enter(self, key: _Key, rank: int) -> None:
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [rank]
            for ranking in self._rankings.values():
                ranking.enter(key)
        else:
            insort(bucket, rank)

    def book(self, decision: Decision) -> None:
        for b in decision.bookings:
            self._set(b.gpu_id, self._layout[b.gpu_id].add(b.instance))

    def free(self, bookings: list[Booking]) -> None:
        for b in bookings:
            self._set(b.gpu_id, self._layout[b.gpu_id].remove(b.instance))

    def snapshot(self) -> list[NodeCapacity]:
        """Every node, in node-id order (the order the scan's tie-breaks assume)."""
        return [self._capacity(n) for n in sorted(self._node_gpus)]

    def _capacity(self, node_id: uuid.UUID) -> NodeCapacity:
        return NodeCapacity(
            node_id, tuple(GpuState(g, i, self._layout[g]) for i, g in self._node_gpus[node_id])
        )

    def place(self, profile: ProfileShape | None, count: int) -> Decision | None:
        if profile is None:
            return self._place_whole(count)
        if count != 1:
            return self._place_mig_many(profile, count)
        ranking = self._rankings[profile.profile_id]
        if not ranking.keys:
            return None
        group = ranking.layouts[ranking.keys[0]]
        if len(group) == 1:
            [(layout, start)] = group.items()
            rank = self._buckets[layout][0]
        else:
            rank, start = min((self._buckets[lay][0], st) for lay, st in group.items())
        gpu_id = self._gpu_at[rank]
        node_id, index = self._gpus[gpu_id]
        return Decision(node_id, (Booking(gpu_id, index, instance_of(profile, start)),))

    def _nodes_by_first_slice(self, profile_id: int) -> Iterator[uuid.UUID]:
        """Nodes in the scan's order for a multi-slice request: by their best GPU's key,
        then node id; each once."""
        ranking = self._rankings[profile_id]
        seen: set[uuid.UUID] = set()
        for key in list(ranking.keys):
            groups = [self._buckets[layout] for layout in ranking.layouts[key]]
            for rank in heapq.merge(*groups):
                node_id = self._gpus[self._gpu_at[rank]][0]
                if node_id not in seen:
                    seen.add(node_id)
                    yield node_id

    def _place_mig_many(self, profile: ProfileShape, count: int) -> Decision | None:
        for node_id in self._nodes_by_first_slice(profile.profile_id):
            bookings = mig_on_node(self._capacity(node_id), profile, count)
            if bookings is not None:
                return Decision(node_id, tuple(bookings))
        return None

    def _place_whole(self, count: int) -> Decision | None:
        for empty in sorted(self._by_empty):
            if empty >= count:
                node_id = self._node_at[self._by_empty[empty][0]]
                break
        else:
            return None
        free = [(i, g) for i, g in self._node_gpus[node_id] if self._layout[g].is_empty][:count]
        return Decision(node_id, tuple(Booking(g, i, WHOLE_GPU) for i, g in free))
