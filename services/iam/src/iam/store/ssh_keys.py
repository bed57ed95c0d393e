"""Queries on users' SSH public keys."""

import datetime as dt
import uuid
from typing import Any

from platformkit.db import UnitOfWork


class SshKeyRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def add(self, row: dict[str, Any]) -> None:
        await self.uow.execute(
            "INSERT INTO ssh_keys (id, user_id, name, algorithm, bits, fingerprint, public_key,"
            " created_at) VALUES (:id, :user_id, :name, :algorithm, :bits, :fingerprint,"
            " :public_key, :created_at)",
            row,
        )

    async def live_by_fingerprint(self, fingerprint: str) -> Any:
        return await self.uow.fetch_one(
            "SELECT * FROM ssh_keys WHERE fingerprint = :f AND revoked_at IS NULL",
            {"f": fingerprint},
        )

    async def count_live(self, user_id: uuid.UUID) -> int:
        row = await self.uow.fetch_one(
            "SELECT count(*) AS n FROM ssh_keys WHERE user_id = :u AND revoked_at IS NULL",
            {"u": user_id},
        )
        return int(row["n"])

    async def of_user(self, user_id: uuid.UUID) -> list[Any]:
        return await self.uow.fetch_all(
            "SELECT * FROM ssh_keys WHERE user_id = :u ORDER BY created_at, id", {"u": user_id}
        )

    async def get(self, user_id: uuid.UUID, key_id: uuid.UUID) -> Any:
        """One of the user's keys, locked for the caller's transaction."""
        return await self.uow.fetch_one(
            "SELECT * FROM ssh_keys WHERE id = :k AND user_id = :u FOR UPDATE",
            {"k": key_id, "u": user_id},
        )

    async def revoke(self, key_id: uuid.UUID, at: dt.datetime) -> None:
        await self.uow.execute(
            "UPDATE ssh_keys SET revoked_at = :at WHERE id = :k", {"k": key_id, "at": at}
        )
