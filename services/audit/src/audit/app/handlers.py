"""audit's event handlers. Each runs inside the consumer's unit of work (inbox included)."""

import datetime as dt
import json

import msgspec

from audit.app.chain import GENESIS, chained_fields, record_hash
from gpucloud_contracts.events.platform import ServiceHeartbeat
from platformkit.db import UnitOfWork
from platformkit.envelope import CloudEvent
from platformkit.ids import uuid7
from platformkit.telemetry import current_trace_id

_CHAIN_LOCK = 7_400_001


async def record_privileged_event(event: CloudEvent, uow: UnitOfWork) -> None:
    """Append one event to the chain. The advisory lock serializes appends so each record
    links to exactly one predecessor, even with several consumer instances."""
    await uow.execute("SELECT pg_advisory_xact_lock(:k)", {"k": _CHAIN_LOCK})
    last = await uow.fetch_one("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1")
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
    await uow.execute(
        "INSERT INTO audit_records (seq, id, event_id, event_type, source, subject, tenant,"
        " trace_id, occurred_at, recorded_at, payload, prev_hash, hash) VALUES (:seq, :id,"
        " :event_id, :event_type, :source, :subject, :tenant, :trace_id, :occurred_at,"
        " :recorded_at, CAST(:payload AS jsonb), :prev_hash, :hash)",
        {
            **record,
            "payload": json.dumps(record["payload"]),
            "trace_id": current_trace_id(),
            "recorded_at": dt.datetime.now(dt.UTC),
            "prev_hash": prev_hash,
            "hash": record_hash(prev_hash, chained_fields(record)),
        },
    )


async def record_heartbeat(event: CloudEvent, uow: UnitOfWork) -> None:
    """Upsert the latest heartbeat per service; an older (reordered, replayed) beat loses."""
    beat = msgspec.json.decode(event.data, type=ServiceHeartbeat)
    await uow.execute(
        "INSERT INTO service_status (service, instance, version, git_sha, ready, checks,"
        " started_at, last_seen_at) VALUES (:service, :instance, :version, :git_sha, :ready,"
        " CAST(:checks AS jsonb), :started_at, :sent_at)"
        " ON CONFLICT (service) DO UPDATE SET instance = EXCLUDED.instance,"
        " version = EXCLUDED.version, git_sha = EXCLUDED.git_sha, ready = EXCLUDED.ready,"
        " checks = EXCLUDED.checks, started_at = EXCLUDED.started_at,"
        " last_seen_at = EXCLUDED.last_seen_at"
        " WHERE service_status.last_seen_at <= EXCLUDED.last_seen_at",
        {
            "service": beat.service,
            "instance": beat.instance,
            "version": beat.version,
            "git_sha": beat.git_sha,
            "ready": beat.ready,
            "checks": json.dumps(beat.checks),
            "started_at": beat.started_at,
            "sent_at": beat.sent_at,
        },
    )
