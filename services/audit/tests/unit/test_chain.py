import datetime as dt
import uuid

from audit.app.chain import GENESIS, chained_fields, record_hash


def _record(seq: int, **changes):
    record = {
        "seq": seq,
        "id": uuid.UUID(int=seq),
        "event_id": uuid.UUID(int=1000 + seq),
        "event_type": "iam.tenant.created",
        "source": "iam",
        "subject": "s",
        "tenant": "t",
        "occurred_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "payload": {"n": seq},
    }
    record.update(changes)
    return record


def _chain(records):
    hashes, prev = [], GENESIS
    for r in records:
        prev = record_hash(prev, chained_fields(r))
        hashes.append(prev)
    return hashes


class TestHashChain:
    def test_same_records_same_chain(self):
        records = [_record(i) for i in range(1, 5)]
        assert _chain(records) == _chain([_record(i) for i in range(1, 5)])

    def test_editing_any_field_of_a_record_changes_its_hash_and_all_later_ones(self):
        original = _chain([_record(i) for i in range(1, 5)])
        tampered = _chain([_record(1), _record(2, payload={"n": 99}), _record(3), _record(4)])
        assert tampered[0] == original[0]
        assert all(a != b for a, b in zip(tampered[1:], original[1:], strict=True))

    def test_removing_a_record_breaks_the_links_after_it(self):
        original = _chain([_record(i) for i in range(1, 4)])
        without_second = _chain([_record(1), _record(3)])
        assert without_second[1] != original[2]
