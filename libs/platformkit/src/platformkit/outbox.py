"""Transactional outbox: events are rows written in the caller's transaction.

`add_event` never commits; the event exists exactly when the domain change that caused it
commits. The relay (platformkit.relay) publishes committed rows to Kafka.
"""

import uuid
from typing import Any

from sqlalchemy import text

from platformkit.db import UnitOfWork
from platformkit.envelope import CloudEvent, new_event
from platformkit.telemetry import current_traceparent

_INSERT = (
    "INSERT INTO outbox (id, topic, key, type, source, subject, tenant, traceparent,"
    " occurred_at, payload) VALUES (:id, :topic, :key, :type, :source, :subject, :tenant,"
    " :traceparent, :occurred_at, :payload)"
)
_INSERT_STMT = text(_INSERT)


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


async def add_events(uow: UnitOfWork, topic: str, events: list[CloudEvent]) -> None:
    """Bulk form for hot paths: one executemany for many prepared events."""
    if events:
        await uow.session.execute(_INSERT_STMT, [_row(topic, e) for e in events])


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
