"""Queries on second factors, recovery codes and tenant sign-in policies."""

import datetime as dt
import uuid
from typing import Any

from platformkit.db import UnitOfWork
from platformkit.ids import uuid7


class MfaRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def factor(self, user_id: uuid.UUID, *, for_update: bool = False) -> Any:
        sql = "SELECT * FROM mfa_factors WHERE user_id = :u"
        return await self.uow.fetch_one(sql + (" FOR UPDATE" if for_update else ""), {"u": user_id})

    async def has_active_factor(self, user_id: uuid.UUID) -> bool:
        row = await self.uow.fetch_one(
            "SELECT 1 AS one FROM mfa_factors WHERE user_id = :u AND status = 'active'",
            {"u": user_id},
        )
        return row is not None

    async def put_pending(
        self, user_id: uuid.UUID, secret: bytes, encrypted: bool, at: dt.datetime
    ) -> None:
        """A new pending TOTP factor, replacing an earlier pending one (never an active one:
        the caller checked, under the row lock)."""
        await self.uow.execute(
            "INSERT INTO mfa_factors (user_id, method, secret, encrypted, status, created_at)"
            " VALUES (:u, 'totp', :s, :e, 'pending', :at) ON CONFLICT (user_id) DO UPDATE"
            " SET secret = :s, encrypted = :e, created_at = :at, last_step = NULL"
            " WHERE mfa_factors.status = 'pending'",
            {"u": user_id, "s": secret, "e": encrypted, "at": at},
        )

    async def activate(self, user_id: uuid.UUID, step: int, at: dt.datetime) -> None:
        await self.uow.execute(
            "UPDATE mfa_factors SET status = 'active', activated_at = :at, last_step = :step"
            " WHERE user_id = :u",
            {"u": user_id, "at": at, "step": step},
        )

    async def accept_step(self, user_id: uuid.UUID, step: int) -> bool:
        """Record `step` as used; False when an equal or later step was used meanwhile."""
        result = await self.uow.execute(
            "UPDATE mfa_factors SET last_step = :step WHERE user_id = :u"
            " AND status = 'active' AND (last_step IS NULL OR last_step < :step)",
            {"u": user_id, "step": step},
        )
        return result.rowcount == 1

    async def replace_recovery_codes(
        self, user_id: uuid.UUID, digests: list[bytes], at: dt.datetime
    ) -> None:
        await self.uow.execute("DELETE FROM recovery_codes WHERE user_id = :u", {"u": user_id})
        for code_hash in digests:
            await self.uow.execute(
                "INSERT INTO recovery_codes (id, user_id, code_hash, created_at)"
                " VALUES (:id, :u, :h, :at)",
                {"id": uuid7(), "u": user_id, "h": code_hash, "at": at},
            )

    async def use_recovery_code(self, user_id: uuid.UUID, code_hash: bytes) -> bool:
        """Atomically spend a code: two sign-ins racing with the same code, one wins."""
        row = await self.uow.fetch_one(
            "UPDATE recovery_codes SET used_at = now() WHERE user_id = :u AND code_hash = :h"
            " AND used_at IS NULL RETURNING id",
            {"u": user_id, "h": code_hash},
        )
        return row is not None

    async def recovery_codes_left(self, user_id: uuid.UUID) -> int:
        row = await self.uow.fetch_one(
            "SELECT count(*) AS n FROM recovery_codes WHERE user_id = :u AND used_at IS NULL",
            {"u": user_id},
        )
        return int(row["n"])

    async def requires_mfa_for_admins(self, tenant_id: uuid.UUID) -> bool:
        row = await self.uow.fetch_one(
            "SELECT require_mfa_for_admins FROM tenant_policies WHERE tenant_id = :t",
            {"t": tenant_id},
        )
        return bool(row and row["require_mfa_for_admins"])

    async def set_policy(self, tenant_id: uuid.UUID, require: bool, at: dt.datetime) -> None:
        await self.uow.execute(
            "INSERT INTO tenant_policies (tenant_id, require_mfa_for_admins, updated_at)"
            " VALUES (:t, :r, :at) ON CONFLICT (tenant_id) DO UPDATE"
            " SET require_mfa_for_admins = :r, updated_at = :at",
            {"t": tenant_id, "r": require, "at": at},
        )
