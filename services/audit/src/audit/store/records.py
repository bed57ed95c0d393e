"""audit's status read model queries (the log's are in store/log.py). Repositories run in
the caller's unit of work; they never commit."""

from typing import Any

from platformkit.db import UnitOfWork


class AuditRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

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
