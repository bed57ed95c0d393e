"""The scheduler's live placement index: one `PlacementIndex` per (database, SKU) in this
process, kept current without re-reading the fleet on every request.

- First use: one query (a row per GPU with its layout encoded as a small int array) and
  `PlacementIndex.build`.
- Every placement first reads the SKU's capacity generation (one indexed row). Equal to
  ours: the index is current. Different: reload only the nodes with a GPU stamped after
  our generation (and nodes marked dirty), from one query. Generations commit in order
  (see migration 0002), so nothing is missed.
- This process's own bookings are applied to the index as soon as they are booked, so
  concurrent requests here pick different slots; a booking whose transaction rolls back
  marks its node dirty. A commit whose generation is exactly ours + 1 was only our own
  change, already applied: no reload.
- Stale in the other direction (the index shows free a slice another replica took before
  we saw its generation) is caught by the database's `(gpu, slice)` key: the booking
  fails, the node is reloaded, the next candidate is tried.
"""

import asyncio
import uuid
import weakref
from collections import defaultdict
from collections.abc import Iterable

from gpuaas.domain.catalog import SHAPES
from gpuaas.domain.geometry import WHOLE_GPU, Instance, Layout, instance_of
from gpuaas.domain.placement import GpuState, NodeCapacity
from gpuaas.domain.placement_index import PlacementIndex
from gpuaas.store.repository import GenerationRepository
from platformkit.db import Database, UnitOfWork

_layouts: dict[tuple[int, ...], Layout] = {}


def decode_layout(code: Iterable[int] | None) -> Layout:
    """A layout from its code (`profile * 8 + start` per instance; -8 is a whole GPU)."""
    key = tuple(code or ())
    layout = _layouts.get(key)
    if layout is None:
        instances: list[Instance] = []
        for c in key:
            profile, start = divmod(c, 8)
            instances.append(WHOLE_GPU if profile < 0 else instance_of(SHAPES[profile], start))
        layout = _layouts[key] = Layout.of(instances)
    return layout


class LiveIndex:
    def __init__(self, sku: str) -> None:
        self.sku = sku
        self.index: PlacementIndex | None = None
        self.generation = -1
        self.dirty: set[uuid.UUID] = set()
        self.reloads = 0  # nodes reloaded since start (observability, bench)
        self.builds = 0
        self._lock = asyncio.Lock()

    async def current(self, uow: UnitOfWork) -> PlacementIndex:
        """The index, brought up to date with every committed capacity change."""
        async with self._lock:
            repo = GenerationRepository(uow)
            generation = await repo.current(self.sku)
            if self.index is None:
                rows = await repo.index_rows(self.sku)
                self.index = PlacementIndex.build(
                    (node, gpu, index, decode_layout(code)) for node, gpu, index, _, code in rows
                )
                self.builds += 1
                self.generation = generation
                self.dirty.clear()
            elif generation != self.generation or self.dirty:
                dirty = list(self.dirty)
                rows = await repo.index_rows(self.sku, changed_since=self.generation, nodes=dirty)
                self.dirty.difference_update(dirty)
                self._reload(self.index, rows, dirty)
                self.generation = max(self.generation, generation)
            return self.index

    def _reload(self, index: PlacementIndex, rows: list, listed: list[uuid.UUID]) -> None:
        by_node: dict[uuid.UUID, list[GpuState]] = defaultdict(list)
        ready: dict[uuid.UUID, bool] = {}
        for node, gpu, gpu_index, is_ready, code in rows:
            by_node[node].append(GpuState(gpu, gpu_index, decode_layout(code)))
            ready[node] = is_ready
        for node, gpus in by_node.items():
            if ready[node]:
                index.set_node(NodeCapacity(node, tuple(sorted(gpus, key=lambda g: g.index))))
            else:
                index.remove_node(node)
        for node in listed:
            if node not in by_node:
                index.remove_node(node)
        self.reloads += len(by_node)

    def mark_dirty(self, node_ids: Iterable[uuid.UUID]) -> None:
        self.dirty.update(node_ids)

    def committed(self, generation: int | None) -> None:
        """Our own transaction committed this generation; if nothing else came between,
        the index (which already holds our change) is current at it."""
        if generation is not None and generation == self.generation + 1:
            self.generation = generation


_registry: "weakref.WeakKeyDictionary[Database, dict[str, LiveIndex]]" = weakref.WeakKeyDictionary()


def live_index(db: Database, sku: str) -> LiveIndex:
    per_db = _registry.setdefault(db, {})
    live = per_db.get(sku)
    if live is None:
        live = per_db[sku] = LiveIndex(sku)
    return live
