"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs, and their
verification.

Hashing (RFC 9162 §2.1.1), SHA-256 throughout:

- the hash of the empty tree is SHA-256 of nothing;
- a leaf hash is ``SHA-256(0x00 || data)``;
- an interior node is ``SHA-256(0x01 || left || right)``;
- the tree over ``n > 1`` leaves splits at ``k``, the largest power of two below ``n``:
  ``MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))``.

Every subtree that a proof names is a *range* of leaves ``[start, end)`` whose start is a
multiple of a power of two at least as large as its length. Such a range is the fold of a
few *perfect* subtrees, the binary decomposition of its length, largest first
(`perfect_subtrees`); a perfect subtree is a *node* ``(level, index)``, covering leaves
``[index * 2**level, (index + 1) * 2**level)``. Proof generation is therefore written once,
as "which ranges" (`inclusion_ranges`, `consistency_ranges`, exactly RFC 9162 §2.1.3.1
``PATH`` and §2.1.4.1 ``PROOF``/``SUBPROOF``), and each store supplies node hashes its own
way: `tiles` reads them from stored tiles; `inclusion_proof` and `consistency_proof` here
compute them from a list of leaf hashes (the reference, for tests and small trees).

Verification follows RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency) step by step;
the functions raise `ProofError` saying which check failed and return nothing on success.
"""

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

Node = tuple[int, int]
"""A perfect subtree: (level, index), covering leaves [index << level, (index + 1) << level)."""

Range = tuple[int, int]
"""A run of leaves [start, end) as RFC 6962 hashes it (start aligned to the run's size)."""


class ProofError(ValueError):
    """A proof, a size or a hash that does not verify; the message says which check failed."""


def leaf_hash(data: bytes) -> bytes:
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(_NODE_PREFIX + left + right).digest()


def perfect_root(hashes: bytes) -> bytes:
    """Root of a perfect subtree given its 2**k child hashes concatenated (k >= 0): pairs are
    hashed level by level, one bytes buffer per level, no per-node Python objects kept."""
    count, odd_bytes = divmod(len(hashes), HASH_SIZE)
    if odd_bytes or not count or count & (count - 1):
        raise ValueError("perfect_root needs a power-of-two number of 32-byte hashes")
    sha, prefix = _sha256, _NODE_PREFIX
    while len(hashes) > HASH_SIZE:
        hashes = b"".join(
            [sha(prefix + hashes[i : i + 64]).digest() for i in range(0, len(hashes), 64)]
        )
    return hashes


def fold(hashes: Sequence[bytes]) -> bytes:
    """RFC 6962 hash of a range from its perfect subtrees, left to right, largest first:
    ``HASH(h0, HASH(h1, ... HASH(h[-2], h[-1])))``."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = _sha256(_NODE_PREFIX + h + acc).digest()
    return acc


def perfect_subtrees(start: int, end: int) -> list[Node]:
    """The perfect subtrees of the RFC 6962 range [start, end), left to right (largest first).
    ``start`` must be a multiple of a power of two >= ``end - start``, as every range of a
    proof is."""
    if not 0 <= start < end:
        raise ValueError(f"empty or negative range [{start}, {end})")
    length = end - start
    if start & ((1 << (length - 1).bit_length()) - 1):
        raise ValueError(f"range [{start}, {end}) is not a subtree of an RFC 6962 tree")
    nodes: list[Node] = []
    while start < end:
        level = (end - start).bit_length() - 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose hashes form the audit path of leaf ``index`` in the tree of ``size``
    leaves, in proof order (the leaf's sibling first): RFC 9162 §2.1.3.1 ``PATH(m, D[n])``."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    ranges: list[Range] = []
    start, end, m = 0, size, index
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if m < k:  # PATH(m, D[0:k]) : MTH(D[k:n])
            ranges.append((start + k, end))
            end = start + k
        else:  # PATH(m - k, D[k:n]) : MTH(D[0:k])
            ranges.append((start, start + k))
            start, m = start + k, m - k
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The ranges whose hashes form the consistency proof from ``old_size`` to ``new_size``,
    in proof order: RFC 9162 §2.1.4.1 ``PROOF(m, D[n]) = SUBPROOF(m, D[n], true)``; empty
    when ``old_size`` is 0 or equals ``new_size``."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    ranges: list[Range] = []
    start, end, m, whole = 0, new_size, old_size, True
    while m != end - start:
        k = _largest_power_of_two_below(end - start)
        if m <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            ranges.append((start + k, end))
            end = start + k
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            ranges.append((start, start + k))
            start, m, whole = start + k, m - k, False
    if not whole:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def range_hashes(ranges: Sequence[Range], node: Callable[[int, int], bytes]) -> list[bytes]:
    """The hash of each range, from a source of perfect-subtree hashes ``node(level, index)``."""
    return [fold([node(level, i) for level, i in perfect_subtrees(s, e)]) for s, e in ranges]


def _leaf_list_nodes(leaf_hashes: Sequence[bytes]) -> Callable[[int, int], bytes]:
    def node(level: int, index: int) -> bytes:
        first = index << level
        return perfect_root(b"".join(leaf_hashes[first : first + (1 << level)]))

    return node


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the given leaf hashes (all of them), computed from scratch: the reference."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return range_hashes([(0, len(leaf_hashes))], _leaf_list_nodes(leaf_hashes))[0]


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """Audit path of ``index`` in the tree of the first ``size`` leaf hashes (reference)."""
    _check_size(leaf_hashes, size)
    return range_hashes(inclusion_ranges(index, size), _leaf_list_nodes(leaf_hashes))


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int, new_size: int) -> list[bytes]:
    """Consistency proof between the trees of the first ``old_size`` and ``new_size`` leaf
    hashes (reference)."""
    _check_size(leaf_hashes, new_size)
    return range_hashes(consistency_ranges(old_size, new_size), _leaf_list_nodes(leaf_hashes))


def _check_size(leaf_hashes: Sequence[bytes], size: int) -> None:
    if size > len(leaf_hashes):
        raise ValueError(f"tree size {size} exceeds the {len(leaf_hashes)} leaves given")


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` implies for leaf hash ``leaf`` at ``index`` in a tree of
    ``size`` leaves: RFC 9162 §2.1.3.2 steps 1 to 4 (step 5, the comparison, is the caller's
    or `verify_inclusion`'s)."""
    _check_hash(leaf, "leaf hash")
    if not 0 <= index < size:  # step 1
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    fn, sn = index, size - 1  # step 2
    r = leaf  # step 3
    for position, p in enumerate(proof):  # step 4
        _check_hash(p, f"proof[{position}]")
        if sn == 0:  # 4a
            raise ProofError(f"inclusion proof is longer than a tree of size {size} allows")
        if fn & 1 or fn == sn:  # 4b
            r = _sha256(_NODE_PREFIX + p + r).digest()
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(_NODE_PREFIX + r + p).digest()
        fn >>= 1  # 4c
        sn >>= 1
    if sn != 0:  # step 5, first half
        raise ProofError(f"inclusion proof is shorter than a tree of size {size} needs")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> None:
    """RFC 9162 §2.1.3.2: raise `ProofError` unless ``proof`` shows leaf hash ``leaf`` at
    ``index`` in the tree of ``size`` leaves whose root is ``expected_root``."""
    _check_hash(expected_root, "root hash")
    if root_from_inclusion_proof(index, size, leaf, proof) != expected_root:
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the root")


def verify_consistency(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """RFC 9162 §2.1.4.2: raise `ProofError` unless ``proof`` shows that the tree of
    ``new_size`` leaves with root ``new_root`` extends the tree of ``old_size`` leaves with
    root ``old_root``. Equal sizes need equal roots and an empty proof; size 0 is a prefix of
    every tree (empty proof)."""
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    for position, c in enumerate(proof):
        _check_hash(c, f"proof[{position}]")
    if old_size < 0 or new_size < old_size:
        raise ProofError(f"tree size went from {old_size} to {new_size}")
    if old_size == new_size:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"two different roots for the same tree size {old_size}")
        return
    if old_size == 0:
        if proof:
            raise ProofError("a consistency proof from the empty tree must be empty")
        return
    if not proof:  # step 1
        raise ProofError("empty consistency proof between different sizes")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # step 2: first is an exact power of 2
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:  # 6a
            raise ProofError("consistency proof is longer than the sizes allow")
        if fn & 1 or fn == sn:  # 6b
            fr = _sha256(_NODE_PREFIX + c + fr).digest()
            sr = _sha256(_NODE_PREFIX + c + sr).digest()
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _sha256(_NODE_PREFIX + sr + c).digest()
        fn >>= 1  # 6c
        sn >>= 1
    # step 7
    if sn != 0:
        raise ProofError("consistency proof is shorter than the sizes need")
    if fr != old_root:
        raise ProofError(f"consistency proof does not lead to the root of size {old_size}")
    if sr != new_root:
        raise ProofError(f"consistency proof does not lead to the root of size {new_size}")
