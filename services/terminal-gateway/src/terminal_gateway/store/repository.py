"""terminal-gateway's SQL: sessions, recordings, keys, policies and the projections."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Any

from platformkit.db import UnitOfWork

LIVE_STATES = ["minted", "open", "detached"]
NOTIFY_CHANNEL = "terminal_session"
_SESSION = "SELECT * FROM sessions WHERE id = :id"
_SESSION_FOR_UPDATE = _SESSION + " FOR UPDATE"
_ALLOCATION = "SELECT * FROM allocations WHERE id = :id"
_ALLOCATION_FOR_SHARE = _ALLOCATION + " FOR SHARE"
_TENANT = "SELECT status FROM tenants WHERE id = :id"
_TENANT_FOR_SHARE = _TENANT + " FOR SHARE"


class SessionRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def add(self, row: dict[str, Any]) -> None:
        columns = ", ".join(row)
        values = ", ".join(f":{name}" for name in row)
        sql = f"INSERT INTO sessions ({columns}) VALUES ({values})"  # noqa: S608 - our column names
        await self.uow.execute(sql, row)

    async def get(self, session_id: uuid.UUID, *, lock: bool = False) -> Any:
        sql = _SESSION_FOR_UPDATE if lock else _SESSION
        return await self.uow.fetch_one(sql, {"id": session_id})

    async def update(self, session_id: uuid.UUID, **values: Any) -> None:
        assignments = ", ".join(f"{name} = :{name}" for name in values)
        await self.uow.execute(
            f"UPDATE sessions SET {assignments} WHERE id = :id",  # noqa: S608 - fixed column names
            {**values, "id": session_id},
        )

    async def live(self, where: str, params: dict[str, Any]) -> list[Any]:
        """Live sessions matching `where` (a fixed SQL condition), locked, oldest first."""
        return await self.uow.fetch_all(
            "SELECT * FROM sessions WHERE state = ANY(:live) AND "  # noqa: S608 - fixed conditions
            + where
            + " ORDER BY minted_at FOR UPDATE SKIP LOCKED",
            {**params, "live": LIVE_STATES},
        )

    async def live_of_user(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> list[Any]:
        return await self.uow.fetch_all(
            "SELECT * FROM sessions WHERE state = ANY(:live) AND tenant_id = :t AND user_id = :u",
            {"live": LIVE_STATES, "t": tenant_id, "u": user_id},
        )

    async def all_live(self) -> list[Any]:
        return await self.uow.fetch_all(
            "SELECT * FROM sessions WHERE state = ANY(:live)", {"live": LIVE_STATES}
        )

    async def of_tenant(
        self,
        tenant_id: uuid.UUID,
        *,
        state: str | None,
        allocation_id: uuid.UUID | None,
        limit: int,
    ) -> list[Any]:
        return await self.uow.fetch_all(
            "SELECT * FROM sessions WHERE tenant_id = :t"
            " AND (CAST(:state AS text) IS NULL OR state = :state)"
            " AND (CAST(:a AS uuid) IS NULL OR allocation_id = :a)"
            " ORDER BY minted_at DESC, id DESC LIMIT :limit",
            {"t": tenant_id, "state": state, "a": allocation_id, "limit": limit},
        )

    async def use_token(self, session_id: uuid.UUID, token_id: uuid.UUID, at: dt.datetime) -> bool:
        """Spend the session's current connect token: True once, False ever after."""
        result = await self.uow.execute(
            "UPDATE sessions SET token_used_at = :at WHERE id = :id AND token_id = :jti"
            " AND token_used_at IS NULL",
            {"id": session_id, "jti": token_id, "at": at},
        )
        return result.rowcount == 1

    async def renew_relays(self, instances: list[str], at: dt.datetime) -> None:
        """The relays still running say so (each relay has its own instance id)."""
        await self.uow.execute(
            "UPDATE sessions SET relay_seen_at = :at WHERE relay_instance = ANY(:i)"
            " AND state = 'open'",
            {"i": instances, "at": at},
        )

    async def notify(self, session_id: uuid.UUID) -> None:
        """Wake the replica relaying the session (delivered when the transaction commits)."""
        await self.uow.execute(
            "SELECT pg_notify(:channel, :id)", {"channel": NOTIFY_CHANNEL, "id": str(session_id)}
        )


class RecordingRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def next_seq(self, session_id: uuid.UUID) -> int:
        row = await self.uow.fetch_one(
            "SELECT COALESCE(max(seq) + 1, 0) AS seq FROM recording_chunks WHERE session_id = :s",
            {"s": session_id},
        )
        return int(row["seq"])

    async def add(self, session_id: uuid.UUID, seq: int, data: bytes, at: dt.datetime) -> None:
        await self.uow.execute(
            "INSERT INTO recording_chunks (session_id, seq, data, written_at)"
            " VALUES (:s, :seq, :data, :at)",
            {"s": session_id, "seq": seq, "data": data, "at": at},
        )

    async def chunks(self, session_id: uuid.UUID) -> list[bytes]:
        rows = await self.uow.fetch_all(
            "SELECT data FROM recording_chunks WHERE session_id = :s ORDER BY seq",
            {"s": session_id},
        )
        return [bytes(r["data"]) for r in rows]

    async def digest(self, session_id: uuid.UUID) -> tuple[str, int]:
        """('sha256:<hex>', size) of the recording as stored."""
        h, size = hashlib.sha256(), 0
        for chunk in await self.chunks(session_id):
            h.update(chunk)
            size += len(chunk)
        return f"sha256:{h.hexdigest()}", size


class ProjectionRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def allocation(self, allocation_id: uuid.UUID, *, share: bool = False) -> Any:
        # FOR SHARE: a session minted while a release is being applied waits for it (the
        # release then sees and revokes the new session), so none outlives its allocation.
        sql = _ALLOCATION_FOR_SHARE if share else _ALLOCATION
        return await self.uow.fetch_one(sql, {"id": allocation_id})

    async def put_allocation(self, row: dict[str, Any]) -> None:
        await self.uow.execute(
            "INSERT INTO allocations (id, tenant_id, project_id, node_id, state, updated_at)"
            " VALUES (:id, :tenant_id, :project_id, :node_id, :state, :updated_at)"
            " ON CONFLICT (id) DO UPDATE SET"
            " node_id = COALESCE(EXCLUDED.node_id, allocations.node_id),"
            " state = EXCLUDED.state, updated_at = EXCLUDED.updated_at"
            " WHERE allocations.updated_at <= EXCLUDED.updated_at",
            row,
        )

    async def node(self, node_id: uuid.UUID) -> Any:
        return await self.uow.fetch_one("SELECT * FROM nodes WHERE id = :id", {"id": node_id})

    async def put_node(self, row: dict[str, Any]) -> None:
        await self.uow.execute(
            "INSERT INTO nodes (id, name, agent_url, state, updated_at)"
            " VALUES (:id, :name, :agent_url, :state, :updated_at)"
            " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,"
            " agent_url = COALESCE(EXCLUDED.agent_url, nodes.agent_url), state = EXCLUDED.state,"
            " updated_at = EXCLUDED.updated_at WHERE nodes.updated_at <= EXCLUDED.updated_at",
            row,
        )

    async def tenant_status(self, tenant_id: uuid.UUID, *, share: bool = False) -> str | None:
        sql = _TENANT_FOR_SHARE if share else _TENANT
        row = await self.uow.fetch_one(sql, {"id": tenant_id})
        return row["status"] if row else None

    async def put_tenant(self, tenant_id: uuid.UUID, status: str, at: dt.datetime) -> None:
        await self.uow.execute(
            "INSERT INTO tenants (id, status, updated_at) VALUES (:id, :s, :at)"
            " ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,"
            " updated_at = EXCLUDED.updated_at"
            " WHERE tenants.updated_at <= EXCLUDED.updated_at",
            {"id": tenant_id, "s": status, "at": at},
        )

    async def put_ssh_key(self, row: dict[str, Any]) -> None:
        await self.uow.execute(
            "INSERT INTO ssh_keys (id, user_id, fingerprint, public_key, added_at)"
            " VALUES (:id, :user_id, :fingerprint, :public_key, :added_at)"
            " ON CONFLICT (id) DO NOTHING",
            row,
        )

    async def revoke_ssh_key(self, key_id: uuid.UUID, at: dt.datetime) -> None:
        # A revocation that arrives before its key (another partition order) is kept too.
        await self.uow.execute(
            "INSERT INTO ssh_keys (id, user_id, fingerprint, public_key, added_at, revoked_at)"
            " VALUES (:id, '00000000-0000-0000-0000-000000000000', '', '', :at, :at)"
            " ON CONFLICT (id) DO UPDATE SET revoked_at = COALESCE(ssh_keys.revoked_at, :at)",
            {"id": key_id, "at": at},
        )

    async def ssh_key_owner(self, fingerprint: str) -> uuid.UUID | None:
        row = await self.uow.fetch_one(
            "SELECT user_id FROM ssh_keys WHERE fingerprint = :f AND revoked_at IS NULL"
            " ORDER BY added_at DESC LIMIT 1",
            {"f": fingerprint},
        )
        return row["user_id"] if row else None


class PolicyRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def get(self, tenant_id: uuid.UUID) -> Any:
        return await self.uow.fetch_one(
            "SELECT * FROM tenant_policies WHERE tenant_id = :t", {"t": tenant_id}
        )

    async def put(
        self,
        tenant_id: uuid.UUID,
        require_mfa: bool,
        idle_timeout_s: int | None,
        at: dt.datetime,
        by: uuid.UUID | None,
    ) -> None:
        await self.uow.execute(
            "INSERT INTO tenant_policies (tenant_id, require_mfa, idle_timeout_s, updated_at,"
            " updated_by) VALUES (:t, :m, :i, :at, :by) ON CONFLICT (tenant_id) DO UPDATE SET"
            " require_mfa = :m, idle_timeout_s = :i, updated_at = :at, updated_by = :by",
            {"t": tenant_id, "m": require_mfa, "i": idle_timeout_s, "at": at, "by": by},
        )


class KeyRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def live(self, purpose: str) -> list[Any]:
        return await self.uow.fetch_all(
            "SELECT * FROM signing_keys WHERE purpose = :p AND retired_at IS NULL"
            " ORDER BY created_at",
            {"p": purpose},
        )

    async def lock(self) -> None:
        """Serialize key creation across replicas (one key per purpose on first start)."""
        await self.uow.execute("SELECT pg_advisory_xact_lock(7300105)")

    async def add(
        self, key_id: str, purpose: str, private_key: bytes, encrypted: bool, at: dt.datetime
    ) -> None:
        await self.uow.execute(
            "INSERT INTO signing_keys (id, purpose, private_key, encrypted, created_at)"
            " VALUES (:id, :p, :k, :e, :at)",
            {"id": key_id, "p": purpose, "k": private_key, "e": encrypted, "at": at},
        )
