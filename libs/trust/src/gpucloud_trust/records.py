"""The audit record and its leaf encoding: canonical JSON (RFC 8785, JCS), versioned, so any
verifier recomputes the exact leaf bytes, and so the leaf hash, from the record alone.

Canonical JSON (`canonical_json`), RFC 8785 on the value domain audit records use:

- objects: members sorted by their names' UTF-16 code units (not by code points: ``"😂"``
  sorts before ``"דּ"``), no duplicate names, no whitespace anywhere;
- strings: UTF-8; ``"`` and ``\\`` escaped, ``\\b \\t \\n \\f \\r`` as such, other
  characters below U+0020 as ``\\u00xx`` (lower-case hex), everything else literal; lone
  surrogates refused;
- numbers: integers only, within ±(2**53 - 1) (I-JSON's exact range), in plain decimal.
  Floats are refused rather than serialised (RFC 8785 would need ECMAScript's number
  formatting; money and counts are integers here, and a float in an audit record is a bug);
- ``true``, ``false``, ``null``; arrays in their order.

Record layout, version 1 (every key always present, absent values as ``null``), after
NIST SP 800-53 AU-3 (who, what, when, where, outcome)::

    {"v": 1,
     "event_id": "<id of the source event: one leaf per event, replays are no-ops>",
     "event_type": "<e.g. iam.member.role_changed.v1>",
     "time": "YYYY-MM-DDTHH:MM:SS.ffffffZ",           when (UTC)
     "actor": {"subject", "kind", "tenant"},           who
     "action": "<dotted action name>",                 what
     "target": {"kind", "id", "tenant", "project"},    on what
     "outcome": "success" | "failure" | "denied",
     "service": "<service that performed it>",         where
     "client_address": "<client address from the gateway>" | null,
     "trace_id": "<W3C trace id>" | null,
     "details": {...}}                                 anything else, JSON without floats

`decode_record` accepts only bytes that `encode_record` would produce (it re-encodes and
compares), so a leaf has exactly one encoding. A new layout gets a new ``"v"``; decoders
refuse versions they do not know.
"""

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _string  # escapes as RFC 8785 requires
from typing import Any

from gpucloud_trust.checkpoint import CheckpointError, format_time, parse_time
from gpucloud_trust.merkle import leaf_hash

RECORD_VERSION = 1
OUTCOMES = ("success", "failure", "denied")
MAX_SAFE_INTEGER = (1 << 53) - 1

JsonValue = None | bool | int | str | list["JsonValue"] | dict[str, "JsonValue"]


class RecordError(ValueError):
    """Not a canonical version-1 audit record; the message names the field."""


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON of ``value`` (see the module doc for the domain)."""
    return _canonical(value, "$").encode()


def _canonical(value: Any, root: str) -> str:
    try:
        text = _serialise(value)
    except _Refused as refused:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in refused.path)
        raise RecordError(f"{root}{where}: {refused.reason}") from None
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise RecordError(f"{root}: a string has a lone surrogate") from None
    return text


class _Refused(Exception):
    """A value outside the domain; the path is filled in on the way out (errors only)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.path: list[str | int] = []


def _serialise(value: Any) -> str:
    if isinstance(value, str):
        return _string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise _Refused("integer outside ±(2**53 - 1)")
        return str(int(value))
    if isinstance(value, Mapping):
        members = []
        for name in _member_order(value):
            try:
                members.append(_string(name) + ":" + _serialise(value[name]))
            except _Refused as refused:
                refused.path.insert(0, name)
                raise
        return "{" + ",".join(members) + "}"
    if isinstance(value, list | tuple):
        items = []
        for position, item in enumerate(value):
            try:
                items.append(_serialise(item))
            except _Refused as refused:
                refused.path.insert(0, position)
                raise
        return "[" + ",".join(items) + "]"
    if isinstance(value, float):
        raise _Refused("floats are not allowed (use integers)")
    raise _Refused(f"{type(value).__name__} is not a JSON value")


def _member_order(value: Mapping[Any, Any]) -> list[str]:
    """Member names by UTF-16 code units. Code point order is the same unless a name has a
    character above U+FFFF (a surrogate pair in UTF-16, below U+E000..U+FFFF there)."""
    names = list(value)
    if not all(isinstance(name, str) for name in names):
        raise _Refused("object member names must be strings")
    names.sort()
    if not all(map(str.isascii, names)) and any(n and max(n) > "\uffff" for n in names):
        names.sort(key=lambda n: n.encode("utf-16-be", "surrogatepass"))
    return names


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise RecordError(f"duplicate member name {key!r}")
        result[key] = value
    return result


def _refuse(text: str) -> Any:
    raise RecordError(f"number {text} is not an integer")


def parse_canonical_json(data: bytes) -> Any:
    """Parse bytes that must be canonical JSON as `canonical_json` writes it."""
    try:
        value = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_float=_refuse,
            parse_constant=_refuse,
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecordError(f"not JSON: {e}") from None
    if canonical_json(value) != data:
        raise RecordError("JSON is not in canonical form (RFC 8785)")
    return value


@dataclass(frozen=True, slots=True)
class Actor:
    subject: str
    kind: str
    tenant: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    kind: str
    id: str
    tenant: str | None = None
    project: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    event_id: str
    event_type: str
    time: dt.datetime
    actor: Actor
    action: str
    target: Target
    outcome: str
    service: str
    client_address: str | None = None
    trace_id: str | None = None
    details: Mapping[str, JsonValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("event_id", "event_type", "action", "service"):
            _require_text(getattr(self, name), name)
        _require_text(self.actor.subject, "actor.subject")
        _require_text(self.actor.kind, "actor.kind")
        _require_text(self.target.kind, "target.kind")
        _require_text(self.target.id, "target.id")
        if self.outcome not in OUTCOMES:
            raise RecordError(f"outcome: must be one of {', '.join(OUTCOMES)}")
        if not isinstance(self.time, dt.datetime) or self.time.utcoffset() is None:
            raise RecordError("time: must be a timezone-aware datetime")
        if not isinstance(self.details, Mapping):
            raise RecordError("details: must be an object")

    @property
    def tenant(self) -> str | None:
        """The tenant whose trail shows this record: the target's, else the actor's."""
        return self.target.tenant or self.actor.tenant

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "v": RECORD_VERSION,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "time": format_time(self.time),
            "actor": {
                "subject": self.actor.subject,
                "kind": self.actor.kind,
                "tenant": self.actor.tenant,
            },
            "action": self.action,
            "target": {
                "kind": self.target.kind,
                "id": self.target.id,
                "tenant": self.target.tenant,
                "project": self.target.project,
            },
            "outcome": self.outcome,
            "service": self.service,
            "client_address": self.client_address,
            "trace_id": self.trace_id,
            "details": dict(self.details),
        }


_TOP = {
    "v",
    "event_id",
    "event_type",
    "time",
    "actor",
    "action",
    "target",
    "outcome",
    "service",
    "client_address",
    "trace_id",
    "details",
}
_ACTOR = {"subject", "kind", "tenant"}
_TARGET = {"kind", "id", "tenant", "project"}


def _require_text(value: Any, name: str) -> None:
    if not isinstance(value, str) or not value:
        raise RecordError(f"{name}: must be a non-empty string")


def _optional_text(value: Any, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise RecordError(f"{name}: must be a string or null")
    return value


def _members(value: Any, names: set[str], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecordError(f"{where}: must be an object")
    if set(value) != names:
        odd = sorted(set(value) ^ names)
        raise RecordError(f"{where}: unexpected or missing members {', '.join(odd)}")
    return value


def _optional(value: str | None) -> str:
    return "null" if value is None else _string(value)


def encode_record(record: AuditRecord) -> bytes:
    """The leaf bytes of ``record``: canonical JSON of its version-1 layout. Written out
    member by member in canonical order, since the layout is fixed (the audit service pays
    this per record); equal to ``canonical_json(record.to_json())``, which the tests check."""
    actor, target = record.actor, record.target
    details = _canonical(record.details, "details")
    text = (
        f'{{"action":{_string(record.action)},'
        f'"actor":{{"kind":{_string(actor.kind)},"subject":{_string(actor.subject)},'
        f'"tenant":{_optional(actor.tenant)}}},'
        f'"client_address":{_optional(record.client_address)},'
        f'"details":{details},'
        f'"event_id":{_string(record.event_id)},'
        f'"event_type":{_string(record.event_type)},'
        f'"outcome":{_string(record.outcome)},'
        f'"service":{_string(record.service)},'
        f'"target":{{"id":{_string(target.id)},"kind":{_string(target.kind)},'
        f'"project":{_optional(target.project)},"tenant":{_optional(target.tenant)}}},'
        f'"time":"{format_time(record.time)}",'
        f'"trace_id":{_optional(record.trace_id)},'
        f'"v":{RECORD_VERSION}}}'
    )
    try:
        return text.encode()
    except UnicodeEncodeError:
        raise RecordError("a string of the record has a lone surrogate") from None


def record_leaf_hash(record: AuditRecord) -> bytes:
    return leaf_hash(encode_record(record))


def decode_record(data: bytes) -> AuditRecord:
    """The record in leaf bytes ``data``; refuses anything `encode_record` would not write."""
    top = parse_canonical_json(data)
    if not isinstance(top, dict) or top.get("v") != RECORD_VERSION:
        raise RecordError(f"v: only version {RECORD_VERSION} audit records are known")
    _members(top, _TOP, "record")
    actor = _members(top["actor"], _ACTOR, "actor")
    target = _members(top["target"], _TARGET, "target")
    if not isinstance(top["time"], str):
        raise RecordError("time: must be a string")
    try:
        time = parse_time(top["time"])
    except CheckpointError as e:
        raise RecordError(f"time: {e}") from None
    for name in ("event_id", "event_type", "action", "outcome", "service"):
        _require_text(top[name], name)
    record = AuditRecord(
        event_id=top["event_id"],
        event_type=top["event_type"],
        time=time,
        actor=Actor(
            subject=actor["subject"],
            kind=actor["kind"],
            tenant=_optional_text(actor["tenant"], "actor.tenant"),
        ),
        action=top["action"],
        target=Target(
            kind=target["kind"],
            id=target["id"],
            tenant=_optional_text(target["tenant"], "target.tenant"),
            project=_optional_text(target["project"], "target.project"),
        ),
        outcome=top["outcome"],
        service=top["service"],
        client_address=_optional_text(top["client_address"], "client_address"),
        trace_id=_optional_text(top["trace_id"], "trace_id"),
        details=top["details"],
    )
    if encode_record(record) != data:
        raise RecordError("record does not re-encode to the same bytes")
    return record
