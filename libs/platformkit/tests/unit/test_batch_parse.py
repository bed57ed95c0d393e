"""The batch consumer's fast envelope parser agrees with `envelope.from_kafka` on every
record: the same CloudEvent for a valid one, an EnvelopeError for an invalid one."""

import uuid

from hypothesis import given
from hypothesis import strategies as st

from platformkit.consumers import parse_record
from platformkit.envelope import EnvelopeError, from_kafka, new_event


def _outcome(parse, headers, value):
    try:
        return parse(headers, value)
    except EnvelopeError:
        return EnvelopeError


_ID_FORMS = st.sampled_from(
    [
        lambda u: str(u),
        lambda u: u.hex,
        lambda u: str(u).upper(),
        lambda u: "urn:uuid:" + str(u),
        lambda u: "{" + str(u) + "}",
        lambda u: str(u)[:-1],
        lambda u: "not-a-uuid",
    ]
)


@given(
    tenant=st.none() | st.text(min_size=1, max_size=8),
    traceparent=st.none() | st.just("00-" + "a" * 32 + "-" + "b" * 16 + "-01"),
    id_form=_ID_FORMS,
    drop=st.none() | st.sampled_from(["ce_id", "ce_type", "ce_source", "ce_subject", "ce_time"]),
    time_text=st.none() | st.sampled_from(["2026-03-01T00:00:00Z", "yesterday", ""]),
    as_str=st.booleans(),
    value=st.none() | st.binary(max_size=16),
)
def test_agrees_with_from_kafka(tenant, traceparent, id_form, drop, time_text, as_str, value):
    event = new_event(
        type="t.x", source="s", subject="k", payload=b"{}", tenant=tenant, traceparent=traceparent
    )
    headers = []
    for name, raw in event.headers():
        if name == drop:
            continue
        if name == "ce_id":
            raw = id_form(uuid.UUID(raw.decode())).encode()
        if name == "ce_time" and time_text is not None:
            raw = time_text.encode()
        headers.append((name, raw.decode() if as_str else raw))
    fast = _outcome(parse_record, headers, value)
    assert fast == _outcome(from_kafka, headers, value)


def test_a_usual_record_round_trips():
    event = new_event(type="t.x", source="s", subject="k", payload=b'{"a":1}', tenant="t-1")
    assert parse_record(tuple(event.headers()), event.data) == event
