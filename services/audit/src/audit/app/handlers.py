"""audit's per-event handler for heartbeats (the log's batch handler is AuditLog.append_events)."""

import json

import msgspec

from audit.store.records import AuditRepository
from gpucloud_contracts.events.platform import ServiceHeartbeat
from platformkit.db import UnitOfWork
from platformkit.envelope import CloudEvent


async def record_heartbeat(event: CloudEvent, uow: UnitOfWork) -> None:
    """The latest heartbeat per service; an older (reordered, replayed) beat loses."""
    beat = msgspec.json.decode(event.data, type=ServiceHeartbeat)
    await AuditRepository(uow).save_status(
        {
            "service": beat.service,
            "instance": beat.instance,
            "version": beat.version,
            "git_sha": beat.git_sha,
            "ready": beat.ready,
            "checks": json.dumps(beat.checks),
            "started_at": beat.started_at,
            "sent_at": beat.sent_at,
        }
    )
