"""Canonical JSON (RFC 8785) and the version-1 audit record leaf encoding.

JCS vectors: cyberphone/json-canonicalization testdata/input and testdata/output (the RFC
8785 author's reference test data, Apache-2.0): weird.json and unicode.json (commits
77917fbd5d923bca23a9b5eb8851deec918016bf, ff225671c5de178c946aad33ac5ef454d236505e),
french.json and structures.json (b01b0235cf94374efe5d11d00a86a11054756374,
72a2163bae9803964410d89cea8874787a95718b).
"""

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpucloud_trust.merkle import leaf_hash
from gpucloud_trust.records import (
    Actor,
    AuditRecord,
    RecordError,
    Target,
    canonical_json,
    decode_record,
    encode_record,
    parse_canonical_json,
    record_leaf_hash,
)

UNICODE = st.characters(exclude_categories=("Cs",))  # lone surrogates are refused, tested apart
TEXT = st.text(UNICODE)
JCS_VECTORS = [
    (  # weird.json: names sort by UTF-16 code units, so U+1F602 comes before U+FB33
        '{\n  "\\u20ac": "Euro Sign",\n  "1": "One",\n  "\\u0080": "Control\\u007f",\n'
        '  "\\ud83d\\ude02": "Smiley",\n  "\\u00f6": "Latin Small Letter O With Diaeresis",\n'
        '  "\\ufb33": "Hebrew Letter Dalet With Dagesh",\n  "</script>": "Browser Challenge"\n}\n',
        '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f602":"Smiley","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    ),
    (  # french.json: no locale
        '{\n  "peach": "This sorting order",\n  "péché": "is wrong according to French",\n'
        '  "pêche": "but canonicalization MUST",\n  "sin":   "ingnore locale"\n}\n',
        '{"peach":"This sorting order","péché":"is wrong according to French",'
        '"pêche":"but canonicalization MUST","sin":"ingnore locale"}',
    ),
    (  # unicode.json: no normalisation
        '{\n  "Unnormalized Unicode":"\\u1e0d\\u0307"\n}\n',
        '{"Unnormalized Unicode":"\u1e0d\u0307"}',
    ),
    (  # structures.json (its one number, 56.0, is integral: read as the integer 56 here)
        '{\n  "1": {"f": {"f": "hi","F": 5} ,"\\n": 56.0},\n  "10": { },\n  "": "empty",\n'
        '  "a": { },\n  "111": [ { } ],\n  "A": { }\n}',
        '{"":"empty","1":{"\\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}',
    ),
]

RECORD = AuditRecord(
    event_id="0190f3a0-7c1e-7b3a-9f00-000000000001",
    event_type="iam.member.role_changed.v1",
    time=dt.datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=dt.UTC),
    actor=Actor(subject="user:0190f3a0-0000-7000-8000-00000000000a", kind="user", tenant="t-1"),
    action="iam.member.role_changed",
    target=Target(kind="member", id="m-7", tenant="t-1", project=None),
    outcome="success",
    service="iam",
    client_address="203.0.113.7",
    trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    details={"from": "member", "to": "admin", "mfa": True, "count": 2},
)
RECORD_BYTES = (
    b'{"action":"iam.member.role_changed","actor":{"kind":"user",'
    b'"subject":"user:0190f3a0-0000-7000-8000-00000000000a","tenant":"t-1"},'
    b'"client_address":"203.0.113.7","details":{"count":2,"from":"member","mfa":true,'
    b'"to":"admin"},"event_id":"0190f3a0-7c1e-7b3a-9f00-000000000001",'
    b'"event_type":"iam.member.role_changed.v1","outcome":"success","service":"iam",'
    b'"target":{"id":"m-7","kind":"member","project":null,"tenant":"t-1"},'
    b'"time":"2026-03-01T12:00:00.250000Z","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736",'
    b'"v":1}'
)


def integral(text: str) -> int:
    value = float(text)
    assert value.is_integer()
    return int(value)


class TestCanonicalJson:
    @pytest.mark.parametrize(("source", "expected"), JCS_VECTORS)
    def test_reference_vectors(self, source, expected):
        value = json.loads(source, parse_float=integral)
        assert canonical_json(value) == expected.encode()
        assert parse_canonical_json(expected.encode()) == value

    def test_string_escapes(self):
        assert canonical_json('\b\t\n\f\r"\\/\x1f\x7f\u2028') == (
            b'"\\b\\t\\n\\f\\r\\"\\\\/\\u001f\x7f\xe2\x80\xa8"'
        )

    @pytest.mark.parametrize(
        "value", [1.5, 2**53, -(2**53), float("nan"), {1: "x"}, "\ud800", b"bytes", {"a": [1.0]}]
    )
    def test_outside_the_domain(self, value):
        with pytest.raises(RecordError):
            canonical_json(value)

    @pytest.mark.parametrize(
        "data",
        [
            b'{"b":1,"a":2}',
            b'{"a": 1}',
            b'{"a":1,"a":1}',
            b'"\\u00e9"',
            b'"\\/"',
            b"1.0",
            b"1e2",
            b"NaN",
            b"[1,]",
            b"\xff",
        ],
    )
    def test_non_canonical_bytes_are_refused(self, data):
        with pytest.raises(RecordError):
            parse_canonical_json(data)

    @settings(max_examples=60)
    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | TEXT,
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(UNICODE, max_size=6), inner, max_size=4)
            ),
            max_leaves=10,
        )
    )
    def test_round_trip(self, value):
        data = canonical_json(value)
        assert parse_canonical_json(data) == value
        assert json.loads(data) == value


class TestAuditRecord:
    def test_the_version_1_encoding_is_pinned(self):
        assert encode_record(RECORD) == RECORD_BYTES
        assert record_leaf_hash(RECORD) == leaf_hash(RECORD_BYTES)
        assert decode_record(RECORD_BYTES) == RECORD
        assert RECORD.tenant == "t-1"

    def test_time_is_written_in_utc(self):
        local = dt.datetime(2026, 3, 1, 13, 0, 0, 250000, tzinfo=dt.timezone(dt.timedelta(hours=1)))
        moved = AuditRecord(**{**_fields(RECORD), "time": local})
        assert encode_record(moved) == RECORD_BYTES

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"outcome": "maybe"}, "outcome"),
            ({"action": ""}, "action"),
            ({"time": dt.datetime(2026, 3, 1)}, "time"),
            ({"actor": Actor(subject="", kind="user")}, "actor.subject"),
            ({"target": Target(kind="member", id="")}, "target.id"),
        ],
    )
    def test_invalid_records_name_the_field(self, change, field):
        with pytest.raises(RecordError, match=field):
            AuditRecord(**{**_fields(RECORD), **change})

    def test_floats_in_details_are_refused(self):
        record = AuditRecord(**{**_fields(RECORD), "details": {"ratio": 0.5}})
        with pytest.raises(RecordError, match=r"details\.ratio: floats"):
            encode_record(record)

    def test_the_fast_encoding_equals_canonical_json(self):
        assert encode_record(RECORD) == canonical_json(RECORD.to_json())

    @pytest.mark.parametrize(
        "data",
        [
            RECORD_BYTES.replace(b'"v":1', b'"v":2'),
            RECORD_BYTES.replace(b'"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736",', b""),
            RECORD_BYTES.replace(b'"service":"iam",', b'"service":"iam","extra":1,'),
            RECORD_BYTES.replace(b'"outcome":"success"', b'"outcome":"ok"'),
            RECORD_BYTES.replace(b"12:00:00.250000Z", b"12:00:00.25Z"),
            RECORD_BYTES.replace(b'"tenant":"t-1"}', b'"tenant":7}', 1),
            RECORD_BYTES.replace(b'{"action"', b'{ "action"'),
        ],
    )
    def test_decoding_refuses_anything_but_the_canonical_version_1_layout(self, data):
        with pytest.raises(RecordError):
            decode_record(data)

    @settings(max_examples=60)
    @given(
        st.text(UNICODE, min_size=1),
        st.datetimes(timezones=st.just(dt.UTC)),
        st.one_of(st.none(), TEXT),
        st.dictionaries(st.text(UNICODE, max_size=5), st.integers(-1000, 1000) | TEXT, max_size=3),
    )
    def test_round_trip(self, subject, when, address, details):
        fields = {"time": when, "client_address": address, "details": details}
        actor = Actor(subject=subject, kind="user")
        record = AuditRecord(**{**_fields(RECORD), **fields, "actor": actor})
        assert encode_record(record) == canonical_json(record.to_json())
        assert decode_record(encode_record(record)) == record


def _fields(record: AuditRecord) -> dict:
    return {name: getattr(record, name) for name in AuditRecord.__dataclass_fields__}
