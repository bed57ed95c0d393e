"""The auditor's audit-log invariant (issue 15): after a run in which audit was killed and
restarted, its log has no gap and no duplicate leaf, and the latest checkpoint's root is the
root of the stored leaves."""

import uuid

from chaos.audit import Report, check_log_leaves
from gpucloud_trust import merkle


def _leaves(n: int, start: int = 0) -> list[tuple[int, str, bytes]]:
    return [(start + i, str(uuid.uuid4()), f"leaf {start + i}".encode()) for i in range(n)]


def _root(leaves) -> bytes:
    return merkle.root([merkle.leaf_hash(leaf) for _, _, leaf in leaves])


def _violations(leaves, checkpoint, first: int = 0) -> list[str]:
    report = Report()
    check_log_leaves(report, leaves, checkpoint, first)
    return [v.detail for v in report.violations]


def test_a_whole_log_signed_up_to_a_checkpoint_passes():
    leaves = _leaves(10)
    assert _violations(leaves, (7, _root(leaves[:7]))) == []
    assert _violations([], None) == []


def test_a_gap_a_duplicate_and_a_foreign_root_are_each_reported():
    leaves = _leaves(6)
    gap = leaves[:3] + leaves[4:]
    assert _violations(gap, (3, _root(leaves[:3]))) == ["leaf index 4 where 3 was due"]

    twice = [*leaves, (6, leaves[2][1], b"replayed")]
    assert _violations(twice, (6, _root(leaves))) == [f"source event {leaves[2][1]} is 2 leaves"]

    [finding] = _violations(leaves, (6, _root(leaves[:5])))
    assert finding.startswith("checkpoint 6: root ")


def test_a_log_shorter_than_its_checkpoint_is_reported():
    leaves = _leaves(3)
    assert _violations(leaves, (5, _root(leaves))) == ["checkpoint of size 5, 3 leaves stored"]


def test_before_the_first_checkpoint_gaps_and_duplicates_still_show():
    """audit signs every N records or T seconds: a log may hold leaves no checkpoint covers
    yet (nothing to recompute then), but a gap or a replayed leaf is still a violation."""
    leaves = _leaves(3)
    assert _violations(leaves, None) == []
    assert _violations(leaves[:1] + leaves[2:], None) == ["leaf index 2 where 1 was due"]
    replayed = [*leaves, (3, leaves[0][1], b"again")]
    assert _violations(replayed, None) == [f"source event {leaves[0][1]} is 2 leaves"]


def test_after_retention_the_kept_leaves_start_at_the_pruned_boundary():
    kept = _leaves(4, start=256)
    assert _violations(kept, (260, b"\0" * 32), first=256) == []
    gap = ["leaf index 257 where 256 was due"]
    assert _violations(kept[1:], (260, b"\0" * 32), first=256) == gap
