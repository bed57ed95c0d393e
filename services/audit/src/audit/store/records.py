"""All of audit's queries: the hash-chained log and the status read model. Repositories run
in the caller's unit of work; they never commit."""

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import text

from platformkit.db import UnitOfWork

# Appends take this transaction-scoped lock, so each record links to exactly one
# predecessor even with several consumer instances.
_CHAIN_LOCK = 7_400_001
_COLUMNS = (
    "seq, id, event_id, event_type, source, subject, tenant, trace_id, occurred_at,"
    " recorded_at, payload, hash"
)
_VERIFY_SCAN = text(
    "SELECT seq, id, event_id, event_type, source, subject, tenant, occurred_at, payload,"
    " prev_hash, hash FROM audit_records ORDER BY seq"
)


class AuditRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def lock_chain(self) -> None:
        await self.uow.execute("SELECT pg_advisory_xact_lock(:k)", {"k": _CHAIN_LOCK})

    async def head(self) -> Any:
        """The last record's seq and hash (None for an empty log)."""
        return await self.uow.fetch_one(
            "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
        )

    async def append(self, record: dict[str, Any]) -> None:
        await self.uow.execute(
            "INSERT INTO audit_records (seq, id, event_id, event_type, source, subject, tenant,"
            " trace_id, occurred_at, recorded_at, payload, prev_hash, hash) VALUES (:seq, :id,"
            " :event_id, :event_type, :source, :subject, :tenant, :trace_id, :occurred_at,"
            " :recorded_at, CAST(:payload AS jsonb), :prev_hash, :hash)",
            record,
        )

    async def page(
        self,
        after: int,
        limit: int,
        tenant: str | None,
        subject: str | None,
        event_type: str | None,
    ) -> list[Any]:
        return await self.uow.fetch_all(
            f"SELECT {_COLUMNS} FROM audit_records WHERE seq > :after"  # noqa: S608
            " AND (CAST(:tenant AS text) IS NULL OR tenant = :tenant)"
            " AND (CAST(:subject AS text) IS NULL OR subject = :subject)"
            " AND (CAST(:event_type AS text) IS NULL OR event_type = :event_type)"
            " ORDER BY seq LIMIT :limit",
            {
                "after": after,
                "tenant": tenant,
                "subject": subject,
                "event_type": event_type,
                "limit": limit,
            },
        )

    async def chain(self) -> AsyncIterator[Any]:
        """Every record, in order, streamed (the whole log may be large)."""
        result = await self.uow.session.stream(_VERIFY_SCAN)
        async for row in result.mappings():
            yield row

    async def save_status(self, beat: dict[str, Any]) -> None:
        """Upsert the latest heartbeat per service; an older (reordered, replayed) beat loses."""
        await self.uow.execute(
            "INSERT INTO service_status (service, instance, version, git_sha, ready, checks,"
            " started_at, last_seen_at) VALUES (:service, :instance, :version, :git_sha, :ready,"
            " CAST(:checks AS jsonb), :started_at, :sent_at)"
            " ON CONFLICT (service) DO UPDATE SET instance = EXCLUDED.instance,"
            " version = EXCLUDED.version, git_sha = EXCLUDED.git_sha, ready = EXCLUDED.ready,"
            " checks = EXCLUDED.checks, started_at = EXCLUDED.started_at,"
            " last_seen_at = EXCLUDED.last_seen_at"
            " WHERE service_status.last_seen_at <= EXCLUDED.last_seen_at",
            beat,
        )

    async def statuses(self) -> list[Any]:
        return await self.uow.fetch_all("SELECT * FROM service_status ORDER BY service")
