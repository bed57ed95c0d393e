"""Transactional outbox: events are rows written in the caller's transaction.

`add_event` never commits; the event exists exactly when the domain change that caused it
commits. The relay (platformkit.relay) publishes committed rows to Kafka.
"""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import DateTime, LargeBinary, Text, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from platformkit.db import UnitOfWork
from platformkit.envelope import CloudEvent, new_event
from platformkit.telemetry import current_traceparent

_INSERT = (
    "INSERT INTO outbox (id, topic, key, type, source, subject, tenant, traceparent,"
    " occurred_at, payload) VALUES (:id, :topic, :key, :type, :source, :subject, :tenant,"
    " :traceparent, :occurred_at, :payload)"
)
_INSERT_STMT = text(_INSERT)
_INSERT_MANY = text(
    "INSERT INTO outbox (id, topic, key, type, source, subject, tenant, traceparent,"
    " occurred_at, payload) SELECT * FROM unnest(:id, :topic, :key, :type, :source, :subject,"
    " :tenant, :traceparent, :occurred_at, :payload)"
).bindparams(
    bindparam("id", type_=ARRAY(UUID(as_uuid=True))),
    *(
        bindparam(name, type_=ARRAY(Text))
        for name in ("topic", "key", "type", "source", "subject", "tenant", "traceparent")
    ),
    bindparam("occurred_at", type_=ARRAY(DateTime(timezone=True))),
    bindparam("payload", type_=ARRAY(LargeBinary)),
)


async def add_event(
    uow: UnitOfWork,
    *,
    topic: str,
    type: str,
    source: str,
    subject: str,
    payload: Any,
    tenant: str | None = None,
    event_id: uuid.UUID | None = None,
) -> CloudEvent:
    event = new_event(
        type=type,
        source=source,
        subject=subject,
        payload=payload,
        tenant=tenant,
        traceparent=current_traceparent(),
        event_id=event_id,
    )
    await uow.session.execute(_INSERT_STMT, _row(topic, event))
    return event


async def add_events(uow: UnitOfWork, topic: str, events: Sequence[CloudEvent]) -> None:
    """Bulk form for hot paths (a rating batch announcing hundreds of balances): one
    `unnest` insert of prepared events, in the caller's transaction like `add_event`."""
    if not events:
        return
    await uow.session.execute(
        _INSERT_MANY,
        {
            "id": [e.id for e in events],
            "topic": [topic] * len(events),
            "key": [e.subject for e in events],
            "type": [e.type for e in events],
            "source": [e.source for e in events],
            "subject": [e.subject for e in events],
            "tenant": [e.tenant for e in events],
            "traceparent": [e.traceparent for e in events],
            "occurred_at": [e.time for e in events],
            "payload": [e.data for e in events],
        },
    )


def _row(topic: str, event: CloudEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "topic": topic,
        "key": event.subject,
        "type": event.type,
        "source": event.source,
        "subject": event.subject,
        "tenant": event.tenant,
        "traceparent": event.traceparent,
        "occurred_at": event.time,
        "payload": event.data,
    }
