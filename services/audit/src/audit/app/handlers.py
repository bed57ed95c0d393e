"""audit's event handlers. Each runs inside the consumer's unit of work (inbox included)."""

import datetime as dt
import json

import msgspec

from audit.app.chain import GENESIS, chained_fields, record_hash
from audit.store.records import AuditRepository
from gpucloud_contracts.events.platform import ServiceHeartbeat
from platformkit.db import UnitOfWork
from platformkit.envelope import CloudEvent
from platformkit.ids import uuid7
from platformkit.telemetry import current_trace_id


async def record_privileged_event(event: CloudEvent, uow: UnitOfWork) -> None:
    """Append one event to the chain, under the chain's lock (one predecessor each)."""
    repo = AuditRepository(uow)
    await repo.lock_chain()
    last = await repo.head()
    record = {
        "seq": (last["seq"] + 1) if last else 1,
        "id": uuid7(),
        "event_id": event.id,
        "event_type": event.type,
        "source": event.source,
        "subject": event.subject,
        "tenant": event.tenant,
        "occurred_at": event.time,
        "payload": json.loads(event.data) if event.data else {},
    }
    prev_hash = last["hash"] if last else GENESIS
    await repo.append(
        {
            **record,
            "payload": json.dumps(record["payload"]),
            "trace_id": current_trace_id(),
            "recorded_at": dt.datetime.now(dt.UTC),
            "prev_hash": prev_hash,
            "hash": record_hash(prev_hash, chained_fields(record)),
        }
    )


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
