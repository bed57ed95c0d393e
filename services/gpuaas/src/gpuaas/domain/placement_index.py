"""An incremental index over a fleet's GPU layouts that makes the same decisions as
`placement.place` (over nodes in node-id order) without scanning every GPU.

Structures, each kept ordered so that no decision scans a whole bucket:

- GPUs are bucketed by layout; a fleet has few distinct layouts (hundreds) even with
  thousands of GPUs. Each distinct layout gets a small int id on first sight, with its
  `slot_score` for every profile computed once. Each bucket is a sorted list of GPU ranks,
  `node_id.int << 32 | index` (the scan's tie-break order as one int), so its first GPU is
  `bucket[0]` and a GPU joins or leaves it by bisection.
- Per MIG profile (`_Ranking`), the layouts present where it fits, grouped by key, and the
  sorted distinct keys. A single-slice request reads the lowest key and takes the
  lowest-ranked first GPU among that key's layouts (usually one). A layout enters the
  rankings when its bucket fills and leaves when it empties, so a booking costs a few
  bisections.
- Nodes grouped by their number of empty GPUs (sorted node ints): whole-GPU best fit is
  the first node of the smallest group with enough empty GPUs, and a MIG slice that only
  empty GPUs can take goes to the first node of the smallest non-zero group.
- Multi-slice MIG requests (rare) rank nodes by their best first-slice key exactly as the
  scan does, by walking the rankings in key order, and run the scan's per-node placement on
  those nodes only, in that order, until one takes every slice.

A property test checks decision-for-decision equality with `place`, also after `build`,
`set_node` and `remove_node`.

`build` constructs the index in one pass over (node, gpu, index, layout) rows, sorting each
bucket once (8,000 GPUs: about 70 ms on the shared 2-core dev machine, as before);
`set_node` / `remove_node` then replace single nodes as they change.
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

_INDEX_BITS = 32
_EMPTY = 0  # the empty layout's id


def _rank(node_id: uuid.UUID, index: int) -> int:
    """(node id, gpu index) as one int with the same order."""
    if not 0 <= index < 1 << _INDEX_BITS:
        raise ValueError(f"gpu index {index} out of range")
    return node_id.int << _INDEX_BITS | index


class _Node:
    __slots__ = ("empty", "gpus", "key", "node_id")

    def __init__(self, node_id: uuid.UUID) -> None:
        self.node_id = node_id
        self.key = node_id.int
        self.gpus: list[_Gpu] = []  # by index
        self.empty = 0


class _Gpu:
    __slots__ = ("gpu_id", "index", "layout", "lid", "node", "rank")

    def __init__(self, gpu_id: uuid.UUID, node: _Node, index: int, layout: Layout, lid: int):
        self.gpu_id = gpu_id
        self.node = node
        self.index = index
        self.rank = _rank(node.node_id, index)
        self.layout = layout
        self.lid = lid


class _Ranking:
    """For one profile: the layouts present where it fits, grouped by preference key."""

    __slots__ = ("keys", "layouts")

    def __init__(self) -> None:
        self.keys: list[SlotKey] = []  # sorted, distinct
        self.layouts: dict[SlotKey, dict[int, int]] = {}  # key -> {layout id: best start}

    def enter(self, lid: int, key: SlotKey, start: int) -> None:
        group = self.layouts.get(key)
        if group is None:
            group = self.layouts[key] = {}
            insort(self.keys, key)
        group[lid] = start

    def leave(self, lid: int, key: SlotKey) -> None:
        group = self.layouts[key]
        del group[lid]
        if not group:
            del self.layouts[key]
            del self.keys[bisect_left(self.keys, key)]


class PlacementIndex:
    def __init__(self) -> None:
        self._gpus: dict[uuid.UUID, _Gpu] = {}
        self._at: dict[int, _Gpu] = {}  # rank -> gpu
        self._nodes: dict[uuid.UUID, _Node] = {}
        self._node_at: dict[int, _Node] = {}  # node int -> node
        self._by_empty: dict[int, list[int]] = defaultdict(list)  # empty GPUs -> node ints
        self._rankings = {pid: _Ranking() for pid in SHAPES}
        # Layouts, interned: id -> instances, and where each profile ranks on it.
        self._lids: dict[tuple[Instance, ...], int] = {}
        self._scores: list[list[tuple[_Ranking, SlotKey, int]]] = []
        self._buckets: dict[int, list[int]] = {}  # layout id -> sorted ranks
        self._lid(())

    def _lid(self, instances: tuple[Instance, ...]) -> int:
        lid = self._lids.get(instances)
        if lid is None:
            lid = self._lids[instances] = len(self._scores)
            scores = []
            for pid, ranking in self._rankings.items():
                scored = slot_score(instances, pid)
                if scored is not None:
                    scores.append((ranking, scored[0], scored[1]))
            self._scores.append(scores)
        return lid

    @classmethod
    def build(cls, gpus: Iterable[tuple[uuid.UUID, uuid.UUID, int, Layout]]) -> "PlacementIndex":
        """The index of (node id, gpu id, gpu index, layout) rows, in one pass."""
        index = cls()
        buckets: dict[int, list[int]] = defaultdict(list)
        nodes = index._nodes
        for node_id, gpu_id, gpu_index, layout in gpus:
            node = nodes.get(node_id)
            if node is None:
                node = nodes[node_id] = _Node(node_id)
            gpu = _Gpu(gpu_id, node, gpu_index, layout, index._lid(layout.instances))
            node.gpus.append(gpu)
            node.empty += gpu.lid == _EMPTY
            index._gpus[gpu_id] = index._at[gpu.rank] = gpu
            buckets[gpu.lid].append(gpu.rank)
        for lid, ranks in buckets.items():
            ranks.sort()
            index._buckets[lid] = ranks
            for ranking, key, start in index._scores[lid]:
                ranking.enter(lid, key, start)
        for node in nodes.values():
            node.gpus.sort(key=lambda g: g.index)
            index._node_at[node.key] = node
            index._by_empty[node.empty].append(node.key)
        for keys in index._by_empty.values():
            keys.sort()
        return index

    @property
    def node_ids(self) -> set[uuid.UUID]:
        return set(self._nodes)

    def add_node(self, node: NodeCapacity) -> None:
        self.set_node(node)

    def set_node(self, node: NodeCapacity) -> None:
        """Insert the node, or replace everything known about it."""
        self.remove_node(node.node_id)
        entry = self._nodes[node.node_id] = self._node_at[node.node_id.int] = _Node(node.node_id)
        for state in sorted(node.gpus, key=lambda g: g.index):
            gpu = _Gpu(
                state.gpu_id, entry, state.index, state.layout, self._lid(state.layout.instances)
            )
            entry.gpus.append(gpu)
            entry.empty += gpu.lid == _EMPTY
            self._gpus[gpu.gpu_id] = self._at[gpu.rank] = gpu
            self._enter(gpu.lid, gpu.rank)
        insort(self._by_empty[entry.empty], entry.key)

    def remove_node(self, node_id: uuid.UUID) -> None:
        node = self._nodes.pop(node_id, None)
        if node is None:
            return
        for gpu in node.gpus:
            self._leave(gpu.lid, gpu.rank)
            del self._gpus[gpu.gpu_id], self._at[gpu.rank]
        self._drop_node(node)
        del self._node_at[node.key]

    def _drop_node(self, node: _Node) -> None:
        keys = self._by_empty[node.empty]
        del keys[bisect_left(keys, node.key)]
        if not keys:
            del self._by_empty[node.empty]

    def _set(self, gpu_id: uuid.UUID, layout: Layout) -> None:
        gpu = self._gpus[gpu_id]
        old, lid = gpu.lid, self._lid(layout.instances)
        self._leave(old, gpu.rank)
        self._enter(lid, gpu.rank)
        gpu.layout, gpu.lid = layout, lid
        change = (lid == _EMPTY) - (old == _EMPTY)
        if change:
            node = gpu.node
            self._drop_node(node)
            node.empty += change
            insort(self._by_empty[node.empty], node.key)

    def _leave(self, lid: int, rank: int) -> None:
        bucket = self._buckets[lid]
        del bucket[bisect_left(bucket, rank)]
        if not bucket:
            del self._buckets[lid]
            for ranking, key, _ in self._scores[lid]:
                ranking.leave(lid, key)

    def _enter(self, lid: int, rank: int) -> None:
        bucket = self._buckets.get(lid)
        if bucket is None:
            self._buckets[lid] = [rank]
            for ranking, key, start in self._scores[lid]:
                ranking.enter(lid, key, start)
        else:
            insort(bucket, rank)

    def book(self, decision: Decision) -> None:
        for b in decision.bookings:
            self._set(b.gpu_id, self._gpus[b.gpu_id].layout.add(b.instance))

    def free(self, bookings: list[Booking]) -> None:
        for b in bookings:
            self._set(b.gpu_id, self._gpus[b.gpu_id].layout.remove(b.instance))

    def snapshot(self) -> list[NodeCapacity]:
        """Every node, in node-id order (the order the scan's tie-breaks assume)."""
        return [self._capacity(self._nodes[n]) for n in sorted(self._nodes)]

    @staticmethod
    def _capacity(node: _Node) -> NodeCapacity:
        return NodeCapacity(
            node.node_id, tuple(GpuState(g.gpu_id, g.index, g.layout) for g in node.gpus)
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
        if _EMPTY in group:  # only empty GPUs take it: best fit over nodes, as the scan does
            node = self._node_at[self._by_empty[min(c for c in self._by_empty if c)][0]]
            gpu = next(g for g in node.gpus if g.lid == _EMPTY)
            start = group[_EMPTY]
        elif len(group) == 1:
            [(lid, start)] = group.items()
            gpu = self._at[self._buckets[lid][0]]
        else:
            rank, start = min((self._buckets[lid][0], st) for lid, st in group.items())
            gpu = self._at[rank]
        booking = Booking(gpu.gpu_id, gpu.index, instance_of(profile, start))
        return Decision(gpu.node.node_id, (booking,))

    def _nodes_by_first_slice(self, profile_id: int) -> Iterator[_Node]:
        """Nodes in the scan's order for a multi-slice request: by their best GPU's key
        (for an empty GPU, then the node's empty GPUs), then node id; each once."""
        ranking = self._rankings[profile_id]
        seen: set[int] = set()
        for key in list(ranking.keys):
            group = ranking.layouts[key]
            ordered: Iterator[_Node]
            if _EMPTY in group:  # the empty layout's key: no other layout shares it
                ordered = (
                    self._node_at[n] for c in sorted(self._by_empty) if c for n in self._by_empty[c]
                )
            else:
                ranks = heapq.merge(*(self._buckets[lid] for lid in group))
                ordered = (self._at[rank].node for rank in ranks)
            for node in ordered:
                if node.key not in seen:
                    seen.add(node.key)
                    yield node

    def _place_mig_many(self, profile: ProfileShape, count: int) -> Decision | None:
        for node in self._nodes_by_first_slice(profile.profile_id):
            bookings = mig_on_node(self._capacity(node), profile, count)
            if bookings is not None:
                return Decision(node.node_id, tuple(bookings))
        return None

    def _place_whole(self, count: int) -> Decision | None:
        for empty in sorted(self._by_empty):
            if empty >= count:
                node = self._node_at[self._by_empty[empty][0]]
                break
        else:
            return None
        free = [g for g in node.gpus if g.lid == _EMPTY][:count]
        return Decision(node.node_id, tuple(Booking(g.gpu_id, g.index, WHOLE_GPU) for g in free))
