"""An append-only Merkle log stored as C2SP tlog-tiles (https://c2sp.org/tlog-tiles), as
pure functions: what to store when leaves are appended, which stored hashes a proof needs
and how to combine them.

What is stored
--------------
Tiles of height 8. The tile at *level* ``t`` and *index* ``k`` holds up to 256 consecutive
hashes of tree level ``8 t``: entry ``j`` is the hash of the perfect subtree over leaves
``[(256 k + j) * 256**t, (256 k + j + 1) * 256**t)``. Level-0 tiles hold leaf hashes; each
entry of a level-``t + 1`` tile is the root of one *full* level-``t`` tile. A tile with 256
entries is *full* and never changes again; the rightmost tile of each level is *partial*
(1 to 255 entries) and grows. For a tree of size ``n`` the partial tile at level ``t`` has
``(n >> 8 t) & 255`` entries. Nothing else is stored: interior nodes inside a tile are
recomputed when needed (at most 255 hashes per tile), so storage is ``n * 32 * 256/255``
bytes of hashes, about 321 MB for 10 million leaves.

A row per tile, append-only: ``(level, index, width, hashes)`` with width 1..256. Each
append writes the full tiles it completed and one new version of every partial tile that
changed; an older, narrower version of a tile is a prefix of every newer one (entries never
change once written), so readers take the widest version and the store never needs an
UPDATE; narrower versions can be deleted by a maintenance job at any time. A batch of ``B``
leaves writes about ``B / 256`` full tiles plus one partial tile per level it changed: 17.6
rows on average for batches of 4,000 leaves into a tree growing to 10 million.

Appending (`append`)
--------------------
`TreeState` is what an appender keeps between batches: the size and the entries of the
partial tile at every level (at most 255 * 32 bytes per level, 3 levels for 16 million
leaves). `append(state, leaf_hashes)` returns the new state, the tiles to store and nothing
else; each completed tile is hashed once (255 node hashes per 256 entries), so appending
costs one leaf hash (the caller's) and about one node hash per leaf, amortised. After a
restart, `TreeState.from_tiles(size, tiles)` rebuilds the state from the partial tiles that
`state_tiles(size)` names.

Proofs (`inclusion_plan`, `consistency_plan`, `root_plan`)
----------------------------------------------------------
A proof is a list of range hashes (`merkle.inclusion_ranges` / `consistency_ranges`, RFC
9162); each range is a few perfect subtrees ``(level, index)``; the subtree at tree level
``L = 8 t + r`` is the root of ``2**r`` consecutive entries of one level-``t`` tile. A
`ProofPlan` lists those subtrees; `ProofPlan.tiles()` names the tiles to read (with the
width each must have at least) and `ProofPlan.assemble(tiles)` hashes them into the proof.
An inclusion proof in a tree of 10 million leaves reads at most 5 tiles (one per level on
the leaf's path, plus the partial tiles of the right edge) and hashes a few hundred entries
per tile level: about 0.7 ms of CPU in CPython (`just bench audit-tree`). Any tile version
at least as wide as the plan asks for will do, so proofs for an older tree size can be
answered from the newest tiles.

Pruning
-------
A tile whose covered leaves all lie below a minimum index ``m`` (tile end index
``(k + 1) * 256**(t + 1) <= m``) is never read by a proof of a leaf ``>= m`` in a tree of
size ``>= m``, nor by a consistency proof between two sizes ``>= m`` (tlog-tiles
"Pruning"): `prunable(min_index, keys)` names them. Pruning is by index prefix, whole tiles only.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gpucloud_trust.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    Node,
    consistency_ranges,
    fold,
    inclusion_ranges,
    perfect_root,
    perfect_subtrees,
)

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
TILE_BYTES = TILE_WIDTH * HASH_SIZE

TileKey = tuple[int, int]
"""(level, index) of a tile."""


@dataclass(frozen=True, slots=True)
class Tile:
    """One stored version of a tile: ``hashes`` holds ``width`` concatenated 32-byte hashes."""

    level: int
    index: int
    hashes: bytes

    @property
    def width(self) -> int:
        return len(self.hashes) // HASH_SIZE

    @property
    def full(self) -> bool:
        return len(self.hashes) == TILE_BYTES

    @property
    def key(self) -> TileKey:
        return (self.level, self.index)

    @property
    def path(self) -> str:
        return tile_path(self.level, self.index, self.width)


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """The tlog-tiles resource name, ``tile/<L>/<N>[.p/<W>]``, with ``N`` in zero-padded
    3-digit path elements, all but the last prefixed by ``x`` (1234067 -> x001/x234/067)."""
    if not 0 <= level <= 63 or index < 0 or not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"no tile at level {level}, index {index}, width {width}")
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/{level}/{'/'.join(reversed(groups))}{suffix}"


def levels(size: int) -> int:
    """How many tile levels a tree of ``size`` leaves has (0 for the empty tree)."""
    return (size.bit_length() + TILE_HEIGHT - 1) // TILE_HEIGHT


def partial_width(size: int, level: int) -> int:
    return (size >> (TILE_HEIGHT * level)) & (TILE_WIDTH - 1)


@dataclass(frozen=True, slots=True)
class TreeState:
    """The appender's state: the tree size and, per level, the entries of its partial tile
    (``partial[t]`` holds ``partial_width(size, t)`` hashes, possibly none)."""

    size: int
    partial: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.partial) != levels(self.size):
            raise ValueError(f"tree state of size {self.size} needs {levels(self.size)} levels")
        for level, entries in enumerate(self.partial):
            if len(entries) != partial_width(self.size, level) * HASH_SIZE:
                raise ValueError(f"partial tile at level {level} has the wrong width")

    @classmethod
    def empty(cls) -> "TreeState":
        return cls(0, ())

    @classmethod
    def from_tiles(cls, size: int, tiles: Mapping[TileKey, bytes]) -> "TreeState":
        """Rebuild the state of a stored tree from the tiles `state_tiles(size)` names (any
        version at least as wide; extra entries of a newer version are ignored)."""
        partial = []
        for level in range(levels(size)):
            width = partial_width(size, level)
            if not width:
                partial.append(b"")
                continue
            key = (level, size >> (TILE_HEIGHT * (level + 1)))
            stored = tiles.get(key, b"")
            if len(stored) < width * HASH_SIZE:
                raise LookupError(f"tile {key} is missing or narrower than {width}")
            partial.append(stored[: width * HASH_SIZE])
        return cls(size, tuple(partial))

    def root(self) -> bytes:
        """The tree's root hash, from the partial tiles alone (at most 255 hashes a level)."""
        return fold([h for _, h in self._edge()])

    def _edge(self) -> list[tuple[Node, bytes]]:
        """The perfect subtrees of the tree, left to right, with their hashes."""
        edge: list[tuple[Node, bytes]] = []
        for level in reversed(range(len(self.partial))):
            entries = self.partial[level]
            tile_index = self.size >> (TILE_HEIGHT * (level + 1))
            offset = 0
            for r in reversed(range(TILE_HEIGHT)):
                if len(entries) // HASH_SIZE & (1 << r):
                    group = entries[offset * HASH_SIZE : (offset + (1 << r)) * HASH_SIZE]
                    node_level = TILE_HEIGHT * level + r
                    node_index = ((tile_index << TILE_HEIGHT) + offset) >> r
                    edge.append(((node_level, node_index), perfect_root(group)))
                    offset += 1 << r
        return edge


def state_tiles(size: int) -> list[TileKey]:
    """The tiles `TreeState.from_tiles` reads: the partial tile of each level, if any."""
    return [
        (level, size >> (TILE_HEIGHT * (level + 1)))
        for level in range(levels(size))
        if partial_width(size, level)
    ]


@dataclass(frozen=True, slots=True)
class Appended:
    state: TreeState
    tiles: tuple[Tile, ...]
    """Full tiles completed by this append and the new version of every partial tile that
    changed, lowest level first."""


def append(state: TreeState, leaf_hashes: bytes) -> Appended:
    """Append leaves, given as their concatenated 32-byte leaf hashes, to the tree."""
    if len(leaf_hashes) % HASH_SIZE:
        raise ValueError("leaf hashes must be concatenated 32-byte hashes")
    new_size = state.size + len(leaf_hashes) // HASH_SIZE
    written: list[Tile] = []
    partial: list[bytes] = []
    incoming = leaf_hashes
    for level in range(levels(new_size)):
        old = state.partial[level] if level < len(state.partial) else b""
        if not incoming:
            partial.append(old)
            continue
        first_index = (state.size >> (TILE_HEIGHT * level)) >> TILE_HEIGHT
        entries = old + incoming
        full = len(entries) // TILE_BYTES
        roots = []
        for j in range(full):
            tile = entries[j * TILE_BYTES : (j + 1) * TILE_BYTES]
            written.append(Tile(level, first_index + j, tile))
            roots.append(perfect_root(tile))
        rest = entries[full * TILE_BYTES :]
        if rest:
            written.append(Tile(level, first_index + full, rest))
        partial.append(rest)
        incoming = b"".join(roots)
    return Appended(TreeState(new_size, tuple(partial)), tuple(written))


@dataclass(frozen=True, slots=True)
class ProofPlan:
    """A proof (or a root) as the perfect subtrees of each of its hashes, and the way to
    compute them from tiles."""

    elements: tuple[tuple[Node, ...], ...]

    def tiles(self) -> dict[TileKey, int]:
        """The tiles to read, each with the width it must have at least."""
        needed: dict[TileKey, int] = {}
        for nodes in self.elements:
            for level, index in nodes:
                key, _, end = _node_entries(level, index)
                needed[key] = max(needed.get(key, 0), end)
        return needed

    def assemble(self, tiles: Mapping[TileKey, bytes]) -> list[bytes]:
        """The proof's hashes, from tiles at least as wide as `tiles()` asks."""
        proof = []
        for nodes in self.elements:
            hashes = []
            for level, index in nodes:
                key, start, end = _node_entries(level, index)
                stored = tiles.get(key, b"")
                if len(stored) < end * HASH_SIZE:
                    raise LookupError(f"tile {key} is missing or narrower than {end}")
                hashes.append(perfect_root(stored[start * HASH_SIZE : end * HASH_SIZE]))
            proof.append(fold(hashes))
        return proof


def _node_entries(level: int, index: int) -> tuple[TileKey, int, int]:
    """Where the perfect subtree (level, index) lives: its tile and the entries [start, end)
    of that tile whose root it is."""
    tile_level, r = divmod(level, TILE_HEIGHT)
    first = index << r  # first covered entry at tree level 8 * tile_level
    start = first & (TILE_WIDTH - 1)
    return (tile_level, first >> TILE_HEIGHT), start, start + (1 << r)


def _plan(ranges: Iterable[tuple[int, int]]) -> ProofPlan:
    return ProofPlan(tuple(tuple(perfect_subtrees(s, e)) for s, e in ranges))


def inclusion_plan(index: int, size: int) -> ProofPlan:
    """How to build the inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
    return _plan(inclusion_ranges(index, size))


def consistency_plan(old_size: int, new_size: int) -> ProofPlan:
    """How to build the consistency proof from ``old_size`` to ``new_size``."""
    return _plan(consistency_ranges(old_size, new_size))


def root_plan(size: int) -> ProofPlan:
    """How to compute the root of the tree of ``size`` leaves (any size up to the stored
    one): a plan with a single element; the empty tree has none (its root is EMPTY_ROOT)."""
    return _plan([(0, size)] if size else [])


def leaf_plan(index: int) -> ProofPlan:
    """How to read the stored hash of leaf ``index`` (a plan with one level-0 node)."""
    return ProofPlan((((0, index),),))


def prunable(min_index: int, tiles: Iterable[TileKey]) -> list[TileKey]:
    """The tiles among ``tiles`` that lie wholly below ``min_index``: no proof about leaves
    and tree sizes at or above it reads them (tlog-tiles "Pruning")."""
    return [
        (level, index)
        for level, index in tiles
        if (index + 1) << (TILE_HEIGHT * (level + 1)) <= min_index
    ]


class MemoryTileStore:
    """Tiles in a dict, widest version of each kept: the store the tests and the benchmark
    use, and the shape a database store has (write versions, read the widest)."""

    def __init__(self) -> None:
        self.tiles: dict[TileKey, bytes] = {}
        self.rows_written = 0

    def write(self, tiles: Iterable[Tile]) -> None:
        for tile in tiles:
            self.rows_written += 1
            if len(tile.hashes) > len(self.tiles.get(tile.key, b"")):
                self.tiles[tile.key] = tile.hashes

    def read(self, keys: Iterable[TileKey]) -> dict[TileKey, bytes]:
        return {key: self.tiles[key] for key in keys if key in self.tiles}

    def delete(self, keys: Iterable[TileKey]) -> None:
        for key in keys:
            self.tiles.pop(key, None)


class TiledLog:
    """A tree kept as tiles in a `MemoryTileStore`: append, roots and proofs at any size up
    to the current one. The same steps a service runs against its database, in memory."""

    def __init__(self, store: MemoryTileStore | None = None) -> None:
        self.store = store or MemoryTileStore()
        self.state = TreeState.empty()

    @property
    def size(self) -> int:
        return self.state.size

    def append(self, leaf_hashes: bytes | Sequence[bytes]) -> Appended:
        if not isinstance(leaf_hashes, bytes):
            leaf_hashes = b"".join(leaf_hashes)
        appended = append(self.state, leaf_hashes)
        self.store.write(appended.tiles)
        self.state = appended.state
        return appended

    def _run(self, plan: ProofPlan, size: int) -> list[bytes]:
        if size > self.state.size:
            raise ValueError(f"tree size {size} is beyond the log's {self.state.size}")
        return plan.assemble(self.store.read(plan.tiles()))

    def root(self, size: int | None = None) -> bytes:
        size = self.state.size if size is None else size
        return self._run(root_plan(size), size)[0] if size else EMPTY_ROOT

    def leaf_hash(self, index: int) -> bytes:
        return self._run(leaf_plan(index), index + 1)[0]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.state.size if size is None else size
        return self._run(inclusion_plan(index, size), size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        new_size = self.state.size if new_size is None else new_size
        return self._run(consistency_plan(old_size, new_size), new_size)
