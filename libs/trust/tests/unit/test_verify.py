"""The verifier against a simulated log: every kind of tampering is planted on what the log
serves, and the report must name the exact kind and index."""

import datetime as dt
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpucloud_trust.checkpoint import Checkpoint
from gpucloud_trust.merkle import leaf_hash
from gpucloud_trust.note import Signer
from gpucloud_trust.tiles import TiledLog
from gpucloud_trust.verify import Entry, FindingKind, check_extends, verify_log

ORIGIN = "audit.gpucloud.example/fleet"
KEY = Signer.generate(ORIGIN)
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


class Log:
    """What the audit service keeps: records, their tree as tiles, and its signing key."""

    def __init__(self, records: Sequence[bytes], signer: Signer = KEY) -> None:
        self.records = list(records)
        self.tree = TiledLog()
        self.tree.append([leaf_hash(r) for r in records])
        self.signer = signer

    def checkpoint(self, size: int | None = None) -> bytes:
        size = self.tree.size if size is None else size
        cp = Checkpoint(ORIGIN, size, self.tree.root(size), T0 + dt.timedelta(seconds=size))
        return cp.sign(self.signer)

    def entries(self, indices: Sequence[int] | None = None) -> list[Entry]:
        indices = range(self.tree.size) if indices is None else indices
        return [Entry(i, self.records[i], self.tree.inclusion_proof(i)) for i in indices]

    def consistency(self, *sizes: int) -> dict[int, list[bytes]]:
        return {s: self.tree.consistency_proof(s) for s in sizes}


def records(count: int, tag: str = "a") -> list[bytes]:
    return [f'{{"history":"{tag}","n":{i}}}'.encode() for i in range(count)]


LOG = Log(records(40))
PINNED = [LOG.checkpoint(10), LOG.checkpoint(25)]


def verify(entries, *, latest=None, pinned=PINNED, consistency=None, expect_from=0, **kw):
    return verify_log(
        latest=LOG.checkpoint() if latest is None else latest,
        log_keys=[KEY.verifier],
        origin=ORIGIN,
        pinned=pinned,
        consistency=LOG.consistency(10, 25) if consistency is None else consistency,
        entries=entries,
        expect_from=expect_from,
        **kw,
    )


def replace(entries: list[Entry], index: int, **changes) -> list[Entry]:
    e = entries[index]
    fields = {"index": e.index, "data": e.data, "proof": e.proof, **changes}
    return [*entries[:index], Entry(**fields), *entries[index + 1 :]]


def assert_finding(report, kind: FindingKind, index: int | None):
    assert report.finding is not None, "no inconsistency reported"
    assert (report.finding.kind, report.finding.index) == (kind, index), report.finding.detail


class TestAnHonestLog:
    def test_everything_verifies(self):
        report = verify(LOG.entries())
        assert report.ok and report.checked == 40
        assert report.checkpoint is not None and report.checkpoint.size == 40

    def test_a_sparse_tenant_view_verifies(self):
        report = verify(LOG.entries([3, 9, 27]), expect_from=None)
        assert report.ok and report.checked == 3

    def test_a_range_after_the_last_verified_run_verifies(self):
        assert verify(LOG.entries(range(25, 40)), expect_from=25).ok


class TestCheckpoints:
    def test_a_checkpoint_signed_by_another_key(self):
        forger = Signer.generate(ORIGIN)
        report = verify(LOG.entries(), latest=Log(LOG.records, forger).checkpoint())
        assert_finding(report, FindingKind.BAD_SIGNATURE, None)

    def test_a_checkpoint_whose_text_was_changed(self):
        latest = LOG.checkpoint().replace(b"\n40\n", b"\n41\n")
        assert_finding(verify(LOG.entries(), latest=latest), FindingKind.BAD_SIGNATURE, None)

    def test_another_logs_checkpoint(self):
        other = Checkpoint("other.example/log", 40, LOG.tree.root()).sign(KEY)
        assert_finding(verify(LOG.entries(), latest=other), FindingKind.WRONG_ORIGIN, None)

    def test_a_signed_note_that_is_no_checkpoint(self):
        from gpucloud_trust.note import sign_note

        latest = sign_note(f"{ORIGIN}\nforty\n", KEY)
        assert_finding(verify([], latest=latest), FindingKind.MALFORMED_CHECKPOINT, None)

    def test_a_missing_consistency_proof(self):
        report = verify(LOG.entries(), consistency=LOG.consistency(10))
        assert_finding(report, FindingKind.MISSING_PROOF, None)


class TestPlantedTampering:
    def test_a_modified_record(self):
        entries = replace(LOG.entries(), 17, data=b'{"history":"a","n":1700}')
        report = verify(entries)
        assert_finding(report, FindingKind.TAMPERED, 17)
        assert report.checked == 17

    def test_a_deleted_record_whose_index_is_gone(self):
        entries = [e for e in LOG.entries() if e.index != 17]
        assert_finding(verify(entries), FindingKind.MISSING, 17)

    def test_a_deleted_record_with_the_rest_renumbered(self):
        kept = [r for i, r in enumerate(LOG.records) if i != 17]
        entries = [Entry(i, data, LOG.tree.inclusion_proof(i)) for i, data in enumerate(kept)]
        assert_finding(verify(entries), FindingKind.MISSING, 17)

    def test_two_records_served_out_of_order(self):
        entries = LOG.entries()
        entries[17], entries[18] = entries[18], entries[17]
        assert_finding(verify(entries), FindingKind.REORDERED, 17)
        assert_finding(verify(entries, expect_from=None), FindingKind.REORDERED, 17)

    def test_two_records_swapped_in_place(self):
        entries = LOG.entries()
        entries = replace(entries, 17, data=LOG.records[18])
        entries = replace(entries, 18, data=LOG.records[17])
        assert_finding(verify(entries), FindingKind.REORDERED, 17)

    def test_the_newest_records_cut_off_under_the_same_checkpoint(self):
        assert_finding(verify(LOG.entries(range(35))), FindingKind.TRUNCATED, 35)

    def test_the_newest_records_cut_off_and_a_smaller_tree_signed(self):
        shorter = Log(LOG.records[:30])
        report = verify(shorter.entries(), latest=shorter.checkpoint(), pinned=[LOG.checkpoint(35)])
        assert_finding(report, FindingKind.TREE_SHRANK, 30)

    def test_a_forked_history(self):
        forked = Log(LOG.records[:20] + records(20, tag="b"))
        report = verify(
            forked.entries(), latest=forked.checkpoint(), consistency=forked.consistency(10, 25)
        )
        assert_finding(report, FindingKind.FORK, None)

    def test_a_fork_is_located_with_the_leaf_hashes_verified_before(self):
        forked = Log(LOG.records[:20] + records(20, tag="b"))
        known = {i: leaf_hash(r) for i, r in enumerate(LOG.records[:25])}
        report = verify(
            forked.entries(),
            latest=forked.checkpoint(),
            consistency=forked.consistency(10, 25),
            known_leaf_hashes=known,
        )
        assert_finding(report, FindingKind.FORK, 20)

    def test_two_roots_for_one_size(self):
        forked = Log(LOG.records[:20] + records(5, tag="b"))
        report = verify(
            forked.entries(), latest=forked.checkpoint(), consistency=forked.consistency(10)
        )
        assert_finding(report, FindingKind.FORK, None)

    def test_a_record_rewritten_and_the_tree_rebuilt_and_resigned(self):
        rewritten = LOG.records.copy()
        rewritten[5] = b'{"history":"a","n":"rewritten"}'
        rebuilt = Log(rewritten)
        report = verify(
            rebuilt.entries(),
            latest=rebuilt.checkpoint(),
            consistency=rebuilt.consistency(10, 25),
            known_leaf_hashes={i: leaf_hash(r) for i, r in enumerate(LOG.records[:25])},
        )
        assert_finding(report, FindingKind.FORK, 5)

    def test_sparse_view_refusals(self):
        view = LOG.entries([3, 9, 27])
        assert_finding(
            verify(replace(view, 1, data=b"{}"), expect_from=None), FindingKind.TAMPERED, 9
        )
        assert_finding(
            verify([view[0], view[2], view[1]], expect_from=None), FindingKind.REORDERED, 9
        )
        assert_finding(
            verify([view[0], view[1], view[1]], expect_from=None), FindingKind.DUPLICATE_INDEX, 9
        )
        stray = Entry(40, b"{}", [])
        assert_finding(verify([*view, stray], expect_from=None), FindingKind.INDEX_OUT_OF_RANGE, 40)

    def test_a_proof_for_another_index(self):
        entries = replace(LOG.entries(), 12, proof=LOG.tree.inclusion_proof(13))
        assert_finding(verify(entries), FindingKind.TAMPERED, 12)


class TestPlantedTamperingAnywhere:
    @settings(max_examples=40, deadline=None)
    @given(st.integers(min_value=0, max_value=39), st.integers(min_value=0, max_value=7))
    def test_a_flipped_bit_in_any_record(self, index, bit):
        data = bytearray(LOG.records[index])
        data[len(data) // 2] ^= 1 << bit
        report = verify(replace(LOG.entries(), index, data=bytes(data)))
        assert_finding(report, FindingKind.TAMPERED, index)

    @settings(max_examples=30, deadline=None)
    @given(
        st.integers(min_value=0, max_value=38),  # 39 has no successor to swap with
        st.sampled_from(["gap", "renumbered", "moved", "swapped"]),
    )
    def test_a_deletion_or_reordering_anywhere(self, index, how):
        entries = LOG.entries()
        if how == "gap":
            entries = [e for e in entries if e.index != index]
        elif how == "renumbered":
            kept = [r for i, r in enumerate(LOG.records) if i != index]
            entries = [Entry(i, d, LOG.tree.inclusion_proof(i)) for i, d in enumerate(kept)]
        elif how == "moved":
            entries[index], entries[index + 1] = entries[index + 1], entries[index]
        else:
            entries = replace(entries, index, data=LOG.records[index + 1])
            entries = replace(entries, index + 1, data=LOG.records[index])
        expected = FindingKind.MISSING if how in ("gap", "renumbered") else FindingKind.REORDERED
        if how == "renumbered" and index == 38:
            # record 39, served as 38, comes with no proof of index 39 to recognise it by:
            # all the verifier can say is that 38 is not the leaf the tree holds there
            expected = FindingKind.TAMPERED
        assert_finding(verify(entries), expected, index)


class TestWitness:
    def test_a_witness_accepts_an_extension_and_refuses_a_fork(self):
        stored = Checkpoint(ORIGIN, 25, LOG.tree.root(25))
        latest = Checkpoint(ORIGIN, 40, LOG.tree.root())
        assert check_extends(stored, latest, LOG.tree.consistency_proof(25)) is None
        forked = Log(LOG.records[:20] + records(20, tag="b"))
        other = Checkpoint(ORIGIN, 40, forked.tree.root())
        finding = check_extends(stored, other, forked.tree.consistency_proof(25))
        assert finding is not None and finding.kind is FindingKind.FORK
        shrunk = check_extends(latest, stored, [])
        assert shrunk is not None and (shrunk.kind, shrunk.index) == (FindingKind.TREE_SHRANK, 25)

    def test_every_tree_extends_the_empty_one(self):
        empty = Checkpoint(ORIGIN, 0, LOG.tree.root(0))
        assert check_extends(empty, Checkpoint(ORIGIN, 40, LOG.tree.root()), None) is None

    @pytest.mark.parametrize("size", [25, 40])
    def test_the_same_checkpoint_twice_is_consistent(self, size):
        cp = Checkpoint(ORIGIN, size, LOG.tree.root(size))
        assert check_extends(cp, cp, None) is None
