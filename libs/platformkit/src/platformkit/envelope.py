"""CloudEvents 1.0 envelope in the Kafka protocol binding, binary content mode.

Attributes travel as `ce_*` headers, the JSON payload is the record value and the Kafka
key is the aggregate id (ce_subject), so one aggregate's events keep their order. The
tenant travels as the `ce_tenant` extension attribute and the trace as W3C `traceparent`.

`verify_source` checks the `source` attribute against the services allowed to publish on the
topic (gpucloud_contracts.acls.publishers, from deploy/fleet.toml): a mismatch raises
SourceMismatch, an EnvelopeError, which consumers dead-letter at once. The broker's ACLs
already keep other principals off a family's topics; this keeps a service from being
believed about events of a family it does not own, should its own principal be misused.
"""

import datetime as dt
import uuid
from typing import Any

import msgspec

from gpucloud_contracts.acls import publishers
from platformkit.ids import uuid7

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"


class CloudEvent(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    type: str
    source: str
    subject: str
    time: dt.datetime
    data: bytes
    tenant: str | None = None
    traceparent: str | None = None
    # Who caused the event and from where (platformkit.caller): extension attributes
    # `actor`, `actorkind`, `clientaddr`; absent for events the platform caused itself.
    actor: str | None = None
    actor_kind: str | None = None
    client_address: str | None = None

    @property
    def key(self) -> bytes:
        return self.subject.encode()

    def headers(self) -> list[tuple[str, bytes]]:
        headers = [
            ("ce_specversion", SPEC_VERSION.encode()),
            ("ce_id", str(self.id).encode()),
            ("ce_type", self.type.encode()),
            ("ce_source", self.source.encode()),
            ("ce_subject", self.subject.encode()),
            ("ce_time", self.time.isoformat().encode()),
            ("content-type", CONTENT_TYPE.encode()),
        ]
        if self.tenant:
            headers.append(("ce_tenant", self.tenant.encode()))
        if self.traceparent:
            headers.append(("traceparent", self.traceparent.encode()))
        if self.actor:
            headers.append(("ce_actor", self.actor.encode()))
        if self.actor_kind:
            headers.append(("ce_actorkind", self.actor_kind.encode()))
        if self.client_address:
            headers.append(("ce_clientaddr", self.client_address.encode()))
        return headers

    def decode(self, payload_type: type[Any]) -> Any:
        return msgspec.json.decode(self.data, type=payload_type)


class EnvelopeError(ValueError):
    """A record that is not a valid CloudEvent in the binary Kafka binding."""


def new_event(
    *,
    type: str,
    source: str,
    subject: str,
    payload: Any,
    tenant: str | None = None,
    traceparent: str | None = None,
    event_id: uuid.UUID | None = None,
    actor: str | None = None,
    actor_kind: str | None = None,
    client_address: str | None = None,
) -> CloudEvent:
    return CloudEvent(
        id=event_id or uuid7(),
        type=type,
        source=source,
        subject=subject,
        time=dt.datetime.now(dt.UTC),
        data=payload if isinstance(payload, bytes) else msgspec.json.encode(payload),
        tenant=tenant,
        traceparent=traceparent,
        actor=actor,
        actor_kind=actor_kind,
        client_address=client_address,
    )


def from_kafka(headers: Any, value: bytes | None) -> CloudEvent:
    """Build a CloudEvent from a record's headers (list of pairs or a mapping) and value."""
    items = headers.items() if hasattr(headers, "items") else headers
    attrs = {k: (v.decode() if isinstance(v, bytes | bytearray) else str(v)) for k, v in items}
    try:
        return CloudEvent(
            id=uuid.UUID(attrs["ce_id"]),
            type=attrs["ce_type"],
            source=attrs["ce_source"],
            subject=attrs["ce_subject"],
            time=dt.datetime.fromisoformat(attrs["ce_time"]),
            data=value or b"",
            tenant=attrs.get("ce_tenant"),
            traceparent=attrs.get("traceparent"),
            actor=attrs.get("ce_actor"),
            actor_kind=attrs.get("ce_actorkind"),
            client_address=attrs.get("ce_clientaddr"),
        )
    except (KeyError, ValueError) as exc:
        raise EnvelopeError(f"not a CloudEvent: {exc!r}") from exc


class SourceMismatch(EnvelopeError):
    """An event whose `source` is not a service that may publish on its topic."""


def source_allowed(topic: str, source: str | None) -> bool:
    """Whether `source` may publish on `topic`; any source on a topic no service owns (one
    outside the contracts, as a test's scratch topic)."""
    allowed = publishers(topic)
    return allowed is None or source in allowed


def verify_source(topic: str, event: CloudEvent) -> CloudEvent:
    """`event` itself, or SourceMismatch when its source may not publish on `topic`."""
    if not source_allowed(topic, event.source):
        raise SourceMismatch(
            f"{event.type} on {topic} from source {event.source!r}: only "
            f"{', '.join(sorted(publishers(topic) or ()))} publish there"
        )
    return event
