"""Transactional outbox: events are rows written in the caller's transaction.

A service publishes through its `EventPublisher` (one per service, made with the service's
name as the CloudEvents source):

    EVENTS = EventPublisher("gpuaas")
    await EVENTS.add_event(uow, "gpuaas.allocation.running", subject=..., payload=...)

The topic comes from the contract catalog (`gpucloud_contracts.catalog`: event type ->
topic), and the payload must be the event type's generated Struct, so a service cannot
publish an event on a topic its AsyncAPI document does not give it, nor a payload of
another shape. `add_event` never commits: the event exists exactly when the domain change
that caused it commits. The relay (platformkit.relay) publishes committed rows to Kafka.

`write_events(uow, topic, events)` is the layer below (one `unnest` insert, any topic): for
the kit's own tests and benchmarks.
"""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import DateTime, LargeBinary, Text, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from gpucloud_contracts.catalog import EVENT_TYPES
from gpucloud_contracts.specs import spec_of
from platformkit.caller import current_caller
from platformkit.db import UnitOfWork
from platformkit.envelope import CloudEvent, new_event
from platformkit.telemetry import current_traceparent

_INSERT_MANY = text(
    "INSERT INTO outbox (id, topic, key, type, source, subject, tenant, traceparent,"
    " occurred_at, payload, actor, actor_kind, client_address) SELECT * FROM unnest(:id, :topic,"
    " :key, :type, :source, :subject, :tenant, :traceparent, :occurred_at, :payload, :actor,"
    " :actor_kind, :client_address)"
).bindparams(
    bindparam("id", type_=ARRAY(UUID(as_uuid=True))),
    *(
        bindparam(name, type_=ARRAY(Text))
        for name in (
            "topic",
            "key",
            "type",
            "source",
            "subject",
            "tenant",
            "traceparent",
            "actor",
            "actor_kind",
            "client_address",
        )
    ),
    bindparam("occurred_at", type_=ARRAY(DateTime(timezone=True))),
    bindparam("payload", type_=ARRAY(LargeBinary)),
)


class EventPublisher:
    """The events one service writes to its outbox."""

    def __init__(self, source: str) -> None:
        self.source = source

    def event(
        self,
        type: str,
        *,
        subject: str,
        payload: Any,
        tenant: str | None = None,
        event_id: uuid.UUID | None = None,
        traceparent: str | None = None,
        actor: str | None = None,
        actor_kind: str | None = None,
    ) -> CloudEvent:
        """A CloudEvent of a contract type, for `add_events` (hot paths build many). The
        actor and client address default to the current request's (platformkit.caller); a
        caller names the actor itself where no principal exists yet (a sign-in)."""
        spec = spec_of(EVENT_TYPES, type)
        caller = current_caller.get()
        if not isinstance(payload, spec.payload):
            raise TypeError(f"{type} carries {spec.payload.__name__}, not {type_name(payload)}")
        return new_event(
            type=type,
            source=self.source,
            subject=subject,
            payload=payload,
            tenant=tenant,
            traceparent=traceparent or current_traceparent(),
            event_id=event_id,
            actor=actor or (caller.subject if caller else None),
            actor_kind=actor_kind or (caller.kind if caller else None),
            client_address=caller.address if caller else None,
        )

    async def add_event(
        self,
        uow: UnitOfWork,
        type: str,
        *,
        subject: str,
        payload: Any,
        tenant: str | None = None,
        event_id: uuid.UUID | None = None,
        actor: str | None = None,
        actor_kind: str | None = None,
    ) -> CloudEvent:
        event = self.event(
            type,
            subject=subject,
            payload=payload,
            tenant=tenant,
            event_id=event_id,
            actor=actor,
            actor_kind=actor_kind,
        )
        await self.add_events(uow, [event])
        return event

    async def add_events(self, uow: UnitOfWork, events: Sequence[CloudEvent]) -> None:
        """Bulk form (a rating batch announcing hundreds of balances): one insert."""
        await _insert(uow, [EVENT_TYPES[e.type].topic for e in events], events)


async def write_events(uow: UnitOfWork, topic: str, events: Sequence[CloudEvent]) -> None:
    """Events of any type to one topic, in the caller's transaction (kit tests, benches)."""
    await _insert(uow, [topic] * len(events), events)


async def _insert(uow: UnitOfWork, topics: list[str], events: Sequence[CloudEvent]) -> None:
    if not events:
        return
    await uow.session.execute(
        _INSERT_MANY,
        {
            "id": [e.id for e in events],
            "topic": topics,
            "key": [e.subject for e in events],
            "type": [e.type for e in events],
            "source": [e.source for e in events],
            "subject": [e.subject for e in events],
            "tenant": [e.tenant for e in events],
            "traceparent": [e.traceparent for e in events],
            "occurred_at": [e.time for e in events],
            "payload": [e.data for e in events],
            "actor": [e.actor for e in events],
            "actor_kind": [e.actor_kind for e in events],
            "client_address": [e.client_address for e in events],
        },
    )


def type_name(value: Any) -> str:
    return type(value).__name__
