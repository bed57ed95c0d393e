"""RFC 6962 / 9162 hashing, proofs and verification.

Known-answer vectors come from transparency-dev/merkle (Google's Certificate Transparency
Merkle code, Apache-2.0): the 8-leaf test tree, its roots, inclusion and consistency proofs
from proof/verify_test.go (commit 02194e9afb6c1d95b5381350007963aa70fff472; its leaf
indices are 1-based there, 0-based here) and the hasher vectors from rfc6962/rfc6962_test.go
(commit 78493b07ef9b552e3379abf9e23d4da26fbe797c). The corruption probes mirror that file's
corruptInclusionProof / corruptConsistencyProof.
"""

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpucloud_trust.merkle import (
    EMPTY_ROOT,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    perfect_root,
    perfect_subtrees,
    root,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex
LEAVES = [
    h(""),
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]
LEAF_HASHES = [leaf_hash(d) for d in LEAVES]
ROOTS = [
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
INCLUSION = [  # (0-based leaf index, tree size, audit path)
    (0, 1, []),
    (
        0,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]
CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")


def mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, written as the definition: the oracle for `root`."""
    if not hashes:
        return EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


def flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8 % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


class TestHashing:
    def test_rfc6962_hasher_vectors(self):
        assert (
            EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
        assert leaf_hash(b"").hex() == (
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        )
        assert leaf_hash(b"L123456").hex() == (
            "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
        )
        assert node_hash(b"N123", b"N456").hex() == (
            "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
        )

    def test_roots_of_the_test_tree(self):
        assert root([]) == EMPTY_ROOT
        for size, expected in enumerate(ROOTS, start=1):
            assert root(LEAF_HASHES[:size]) == expected

    def test_root_matches_the_recursive_definition(self):
        hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(70)]
        for size in range(71):
            assert root(hashes[:size]) == mth(hashes[:size])

    def test_perfect_subtrees_decompose_a_right_edge(self):
        assert perfect_subtrees(0, 7) == [(2, 0), (1, 2), (0, 6)]
        assert perfect_subtrees(8, 13) == [(2, 2), (0, 12)]
        with pytest.raises(ValueError):
            perfect_subtrees(3, 6)  # not a subtree: starts mid-way through a pair

    def test_perfect_root_needs_a_power_of_two_of_whole_hashes(self):
        assert perfect_root(b"".join(LEAF_HASHES[:4])) == ROOTS[3]
        for bad in (b"", b"".join(LEAF_HASHES[:3]), LEAF_HASHES[0] + b"x"):
            with pytest.raises(ValueError):
                perfect_root(bad)


class TestInclusion:
    @pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
    def test_known_audit_paths(self, index, size, path):
        assert inclusion_proof(LEAF_HASHES, index, size) == path
        verify_inclusion(index, size, LEAF_HASHES[index], path, ROOTS[size - 1])

    @pytest.mark.parametrize(("index", "size", "path"), [v for v in INCLUSION if v[2]])
    def test_corrupted_proofs_fail(self, index, size, path):
        leaf, good = LEAF_HASHES[index], ROOTS[size - 1]
        probes = [
            (index - 1, size, leaf, path, good),
            (index + 1, size, leaf, path, good),
            (index ^ 2, size, leaf, path, good),
            (index, size * 2, leaf, path, good),
            (index, size // 2, leaf, path, good),
            (index, size, leaf_hash(b"WrongLeaf"), path, good),
            (index, size, leaf, path, EMPTY_ROOT),
            (index, size, leaf, path, SOME_HASH),
            (index, size, leaf, [*path, b""], good),
            (index, size, leaf, [*path, good], good),
            (index, size, leaf, [b"", *path], good),
            (index, size, leaf, [good, *path], good),
            (index, size, leaf, path[:-1], good),
        ]
        if len(path) > 1:
            probes.append((index, size, leaf, [path[0], SOME_HASH, *path[1:]], good))
        for i in range(len(path)):
            probes.append((index, size, leaf, [*path[:i], flip(path[i], 3), *path[i + 1 :]], good))
        for probe in probes:
            with pytest.raises(ProofError):
                verify_inclusion(*probe)

    def test_single_leaf_tree_and_bad_sizes(self):
        leaf = leaf_hash(b"data")
        verify_inclusion(0, 1, leaf, [], leaf)
        for i, s, lf, rt in [(0, 1, leaf, b""), (0, 1, b"", leaf), (0, 1, b"", b"")]:
            with pytest.raises(ProofError):
                verify_inclusion(i, s, lf, [], rt)
        for index, size in [(0, 0), (1, 0), (2, 1), (-1, 4)]:
            with pytest.raises(ProofError):
                root_from_inclusion_proof(index, size, SOME_HASH, [])


class TestConsistency:
    @pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY)
    def test_known_proofs(self, old, new, path):
        assert consistency_proof(LEAF_HASHES, old, new) == path
        verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], path)

    @pytest.mark.parametrize(("old", "new", "path"), [v for v in CONSISTENCY if v[2]])
    def test_corrupted_proofs_fail(self, old, new, path):
        r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
        probes = [
            (old - 1, new, r1, r2, path),
            (old + 1, new, r1, r2, path),
            (old ^ 2, new, r1, r2, path),
            (old, new * 2, r1, r2, path),
            (old, new // 2, r1, r2, path),
            (old, new, leaf_hash(b"WrongRoot"), r2, path),
            (old, new, r1, leaf_hash(b"WrongRoot"), path),
            (old, new, r2, r1, path),
            (old, new, r1, r2, []),
            (old, new, r1, r2, [*path, b""]),
            (old, new, r1, r2, [*path, r1]),
            (old, new, r1, r2, [*path, r2]),
            (old, new, r1, r2, [b"", *path]),
            (old, new, r1, r2, [r1, *path]),
            (old, new, r1, r2, [r2, *path]),
            (old, new, r1, r2, [path[0], *path]),
            (old, new, r1, r2, path[:-1]),
        ]
        for i in range(len(path)):
            probes.append((old, new, r1, r2, [*path[:i], flip(path[i], 4), *path[i + 1 :]]))
        for probe in probes:
            with pytest.raises(ProofError):
                verify_consistency(*probe)

    def test_edge_sizes(self):
        one, two = leaf_hash(b"one"), leaf_hash(b"two")
        verify_consistency(0, 0, one, one, [])
        verify_consistency(0, 1, one, two, [])
        verify_consistency(1, 1, two, two, [])
        failing = [
            (0, 0, one, two, []),
            (1, 1, one, two, []),
            (1, 0, one, two, []),  # the tree shrank
            (2, 1, one, two, []),
            (1, 2, one, two, []),  # different sizes need a proof
            (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT]),
            (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT]),
            (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT]),
        ]
        for probe in failing:
            with pytest.raises(ProofError):
                verify_consistency(*probe)


@st.composite
def trees(draw, max_size=200):
    size = draw(st.integers(min_value=1, max_value=max_size))
    seed = draw(st.binary(min_size=1, max_size=8))
    return [leaf_hash(hashlib.sha256(seed + i.to_bytes(4, "big")).digest()) for i in range(size)]


class TestProperties:
    @settings(max_examples=60, deadline=None)
    @given(trees(), st.data())
    def test_every_inclusion_proof_verifies_and_every_bit_matters(self, hashes, data):
        size = data.draw(st.integers(min_value=1, max_value=len(hashes)))
        index = data.draw(st.integers(min_value=0, max_value=size - 1))
        proof = inclusion_proof(hashes, index, size)
        tree_root = root(hashes[:size])
        verify_inclusion(index, size, hashes[index], proof, tree_root)
        bit = data.draw(st.integers(min_value=0, max_value=255))
        with pytest.raises(ProofError):
            verify_inclusion(index, size, flip(hashes[index], bit), proof, tree_root)
        with pytest.raises(ProofError):
            verify_inclusion(index, size, hashes[index], proof, flip(tree_root, bit))
        if proof:
            at = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
            bad = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
            with pytest.raises(ProofError):
                verify_inclusion(index, size, hashes[index], bad, tree_root)

    @settings(max_examples=60, deadline=None)
    @given(trees(), st.data())
    def test_every_consistency_proof_verifies_and_every_bit_matters(self, hashes, data):
        new = data.draw(st.integers(min_value=1, max_value=len(hashes)))
        old = data.draw(st.integers(min_value=1, max_value=new))
        proof = consistency_proof(hashes, old, new)
        r1, r2 = root(hashes[:old]), root(hashes[:new])
        verify_consistency(old, new, r1, r2, proof)
        bit = data.draw(st.integers(min_value=0, max_value=255))
        with pytest.raises(ProofError):
            verify_consistency(old, new, flip(r1, bit), r2, proof)
        with pytest.raises(ProofError):
            verify_consistency(old, new, r1, flip(r2, bit), proof)
        if proof:
            at = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
            bad = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
            with pytest.raises(ProofError):
                verify_consistency(old, new, r1, r2, bad)

    @settings(max_examples=40, deadline=None)
    @given(trees(max_size=64), st.data())
    def test_a_changed_leaf_breaks_consistency_with_the_old_tree(self, hashes, data):
        new = data.draw(st.integers(min_value=2, max_value=len(hashes) + 1))
        hashes = (hashes * 2)[:new]
        old = data.draw(st.integers(min_value=1, max_value=new - 1))
        changed = data.draw(st.integers(min_value=0, max_value=old - 1))
        forked = [*hashes[:changed], leaf_hash(b"forged"), *hashes[changed + 1 :]]
        with pytest.raises(ProofError):
            verify_consistency(
                old, new, root(hashes[:old]), root(forked), consistency_proof(forked, old, new)
            )
