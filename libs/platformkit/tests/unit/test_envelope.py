import datetime as dt
import uuid

import msgspec
import pytest

from platformkit.envelope import CloudEvent, EnvelopeError, from_kafka, new_event
from platformkit.ids import uuid7


class TestCloudEventBinaryBinding:
    def test_headers_round_trip_every_attribute(self):
        event = new_event(
            type="iam.tenant.created",
            source="iam",
            subject="agg-1",
            payload={"a": 1},
            tenant="t-1",
            traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        )
        back = from_kafka(event.headers(), event.data)
        assert back == event
        assert dict(event.headers())["ce_specversion"] == b"1.0"
        assert event.key == b"agg-1"

    def test_optional_attributes_are_omitted_not_empty(self):
        event = new_event(type="t", source="s", subject="k", payload=b"{}")
        names = {name for name, _ in event.headers()}
        assert "ce_tenant" not in names and "traceparent" not in names
        assert from_kafka(event.headers(), event.data).tenant is None

    def test_mapping_headers_are_accepted(self):
        event = new_event(type="t", source="s", subject="k", payload={})
        assert from_kafka(dict(event.headers()), event.data).id == event.id

    @pytest.mark.parametrize("missing", ["ce_id", "ce_type", "ce_source", "ce_subject", "ce_time"])
    def test_a_record_without_a_required_attribute_is_rejected(self, missing):
        event = new_event(type="t", source="s", subject="k", payload={})
        headers = [h for h in event.headers() if h[0] != missing]
        with pytest.raises(EnvelopeError):
            from_kafka(headers, event.data)

    def test_garbage_id_is_rejected(self):
        event = new_event(type="t", source="s", subject="k", payload={})
        headers = [(k, b"nope" if k == "ce_id" else v) for k, v in event.headers()]
        with pytest.raises(EnvelopeError):
            from_kafka(headers, event.data)

    def test_payload_decodes_to_a_struct(self):
        class Thing(msgspec.Struct):
            n: int

        event = new_event(type="t", source="s", subject="k", payload=Thing(3))
        assert event.decode(Thing) == Thing(3)


class TestIds:
    def test_uuid7_is_version_7_and_time_ordered(self):
        ids = [uuid7() for _ in range(1000)]
        assert all(i.version == 7 for i in ids)
        assert ids == sorted(ids)

    def test_event_time_is_utc(self):
        event = CloudEvent(
            id=uuid.uuid4(),
            type="t",
            source="s",
            subject="k",
            time=dt.datetime.now(dt.UTC),
            data=b"",
        )
        assert event.time.tzinfo is not None
