"""The tiled tree against the reference (merkle.root / inclusion_proof / consistency_proof),
and the tile layout against the C2SP tlog-tiles examples."""

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpucloud_trust import merkle
from gpucloud_trust.tiles import (
    TILE_WIDTH,
    MemoryTileStore,
    TiledLog,
    TreeState,
    append,
    consistency_plan,
    inclusion_plan,
    prunable,
    state_tiles,
    tile_path,
)


def leaves(count: int, start: int = 0, tag: bytes = b"") -> list[bytes]:
    return [
        merkle.leaf_hash(tag + hashlib.sha256(i.to_bytes(8, "big")).digest())
        for i in range(start, start + count)
    ]


@pytest.fixture(scope="module")
def big() -> tuple[TiledLog, list[bytes]]:
    """70,000 leaves in uneven batches: three tile levels, shared by several tests."""
    hashes = leaves(70_000)
    log = TiledLog()
    at = 0
    for batch in (1, 255, 256, 4000, 1, 65_000, 487):
        log.append(hashes[at : at + batch])
        at += batch
    assert at == 70_000
    return log, hashes


class TestLayout:
    def test_tile_paths(self):
        assert tile_path(0, 1234067) == "tile/0/x001/x234/067"
        assert tile_path(1, 5) == "tile/1/005"
        assert tile_path(2, 1000, 17) == "tile/2/x001/000.p/17"
        with pytest.raises(ValueError):
            tile_path(0, 0, 0)

    def test_the_tlog_tiles_example_of_a_70000_leaf_tree(self, big):
        log, _ = big
        widths = {key: len(v) // 32 for key, v in log.store.tiles.items()}
        level0 = {k: w for (lvl, k), w in widths.items() if lvl == 0}
        assert sum(1 for w in level0.values() if w == TILE_WIDTH) == 273
        assert level0[273] == 112 and len(level0) == 274
        assert widths[(1, 0)] == TILE_WIDTH and widths[(1, 1)] == 17
        assert widths[(2, 0)] == 1
        assert len(widths) == 274 + 2 + 1

    def test_a_256_leaf_tree_is_one_full_tile_and_a_level_1_tile_of_width_1(self):
        log = TiledLog()
        log.append(leaves(256))
        assert {k: len(v) // 32 for k, v in log.store.tiles.items()} == {(0, 0): 256, (1, 0): 1}

    def test_a_batch_writes_its_full_tiles_once_and_one_version_per_changed_partial(self, big):
        log, _ = big
        appended = append(log.state, b"".join(leaves(4000, start=70_000)))
        keys = [t.key for t in appended.tiles]
        assert len(keys) == len(set(keys))
        full = [t for t in appended.tiles if t.full]
        assert len(full) == (70_000 + 4000) // 256 - 70_000 // 256
        assert len(appended.tiles) == len(full) + 2  # partial level 0, partial level 1


class TestAgainstTheReference:
    def test_roots_and_proofs_at_every_size_of_a_small_log(self):
        hashes = leaves(600)
        log = TiledLog()
        for size in range(1, 601):
            log.append([hashes[size - 1]])
            assert log.root() == merkle.root(hashes[:size])
            assert log.state.root() == log.root()
        for size in (1, 2, 255, 256, 257, 511, 512, 513, 600):
            assert log.root(size) == merkle.root(hashes[:size])
            for index in {0, size // 2, size - 1}:
                assert log.inclusion_proof(index, size) == merkle.inclusion_proof(
                    hashes, index, size
                )
            for old in {1, size // 3, size - 1, size}:
                if old:
                    assert log.consistency_proof(old, size) == merkle.consistency_proof(
                        hashes, old, size
                    )

    def test_three_levels_of_tiles(self, big):
        log, hashes = big
        assert log.root() == merkle.root(hashes)
        for index in (0, 255, 256, 65_535, 65_536, 69_999):
            proof = log.inclusion_proof(index)
            assert proof == merkle.inclusion_proof(hashes, index, 70_000)
            merkle.verify_inclusion(index, 70_000, hashes[index], proof, log.root())
        for old in (1, 256, 65_536, 65_537, 69_999):
            proof = log.consistency_proof(old)
            merkle.verify_consistency(old, 70_000, merkle.root(hashes[:old]), log.root(), proof)
        assert log.leaf_hash(69_999) == hashes[69_999]

    @settings(max_examples=25, deadline=None)
    @given(st.lists(st.integers(min_value=0, max_value=700), min_size=1, max_size=6), st.data())
    def test_any_batching_gives_the_reference_tree(self, batches, data):
        total = sum(batches)
        hashes = leaves(total, tag=b"p")
        log, at = TiledLog(), 0
        for batch in batches:
            log.append(b"".join(hashes[at : at + batch]))
            at += batch
            assert log.root() == merkle.root(hashes[:at])
        if total:
            size = data.draw(st.integers(min_value=1, max_value=total))
            index = data.draw(st.integers(min_value=0, max_value=size - 1))
            old = data.draw(st.integers(min_value=0, max_value=size))
            assert log.inclusion_proof(index, size) == merkle.inclusion_proof(hashes, index, size)
            assert log.consistency_proof(old, size) == merkle.consistency_proof(hashes, old, size)


class TestRestartAndStorage:
    def test_state_rebuilt_from_stored_tiles_continues_the_same_tree(self, big):
        log, _ = big
        rebuilt = TreeState.from_tiles(log.size, log.store.read(state_tiles(log.size)))
        assert rebuilt == log.state
        more = b"".join(leaves(300, start=70_000))
        assert append(rebuilt, more) == append(log.state, more)

    def test_a_missing_tile_is_an_error_not_a_wrong_proof(self, big):
        log, _ = big
        plan = inclusion_plan(1000, 70_000)
        tiles = log.store.read(plan.tiles())
        del tiles[(0, 1000 // 256)]
        with pytest.raises(LookupError):
            plan.assemble(tiles)
        with pytest.raises(LookupError):
            TreeState.from_tiles(70_001, log.store.read(state_tiles(70_001)))

    def test_state_is_validated(self):
        with pytest.raises(ValueError):
            TreeState(3, (b"\x00" * 64,))
        with pytest.raises(ValueError):
            append(TreeState.empty(), b"\x00" * 33)

    def test_pruned_tiles_are_never_needed_above_the_minimum_index(self, big):
        _, hashes = big
        store = MemoryTileStore()
        log = TiledLog(store)
        log.append(hashes)
        min_index = 65_536 + 3 * 256 + 5
        gone = prunable(min_index, list(store.tiles))
        assert (0, 0) in gone and (1, 0) in gone and (0, min_index // 256) not in gone
        store.delete(gone)
        tree_root = log.root()
        for index in (min_index, min_index + 300, 69_999):
            merkle.verify_inclusion(
                index, 70_000, hashes[index], log.inclusion_proof(index), tree_root
            )
        for old in (min_index, 69_000):
            merkle.verify_consistency(
                old, 70_000, merkle.root(hashes[:old]), tree_root, log.consistency_proof(old)
            )
        with pytest.raises(LookupError):
            log.inclusion_proof(10)

    @settings(max_examples=30, deadline=None)
    @given(st.data())
    def test_any_pruning_keeps_every_proof_at_or_above_the_minimum_index(self, big, data):
        log, _ = big
        min_index = data.draw(st.integers(min_value=0, max_value=69_999))
        size = data.draw(st.integers(min_value=min_index + 1, max_value=70_000))
        index = data.draw(st.integers(min_value=min_index, max_value=size - 1))
        old = data.draw(st.integers(min_value=min_index, max_value=size))
        gone = set(prunable(min_index, log.store.tiles))
        kept = {key: tile for key, tile in log.store.tiles.items() if key not in gone}
        assert len(kept) < len(log.store.tiles) or min_index < 256
        for plan in (inclusion_plan(index, size), consistency_plan(old, size)):
            assert plan.assemble(kept) == plan.assemble(log.store.tiles)
