"""Queries on signing keys and refresh tokens."""

import datetime as dt
import uuid
from typing import Any

import msgspec

from platformkit.db import UnitOfWork


class SigningKeyRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def active(self) -> Any:
        return await self.uow.fetch_one("SELECT * FROM signing_keys WHERE status = 'active'")

    async def get(self, kid: str) -> Any:
        return await self.uow.fetch_one("SELECT * FROM signing_keys WHERE kid = :k", {"k": kid})

    async def add_active(
        self, kid: str, public_jwk: dict[str, Any], private_pkcs8: bytes, encrypted: bool
    ) -> bool:
        """False when another process made an active key first (one active key at a time)."""
        result = await self.uow.execute(
            "INSERT INTO signing_keys (kid, algorithm, public_jwk, private_pkcs8, encrypted,"
            " status, created_at) VALUES (:kid, 'EdDSA', CAST(:jwk AS jsonb), :pk, :enc,"
            " 'active', now()) ON CONFLICT DO NOTHING",
            {"kid": kid, "jwk": msgspec.json.encode(public_jwk).decode(), "pk": private_pkcs8,
             "enc": encrypted},
        )  # fmt: skip
        return result.rowcount == 1

    async def retire_active(self, publish_until: dt.datetime) -> str | None:
        row = await self.uow.fetch_one(
            "UPDATE signing_keys SET status = 'retired', retired_at = now(),"
            " publish_until = :until WHERE status = 'active' RETURNING kid",
            {"until": publish_until},
        )
        return row["kid"] if row else None

    async def published(self) -> list[Any]:
        return await self.uow.fetch_all(
            "SELECT kid, status, public_jwk, created_at, retired_at, publish_until"
            " FROM signing_keys WHERE status = 'active' OR publish_until > now()"
            " ORDER BY created_at DESC"
        )


class RefreshTokenRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def add(
        self,
        *,
        token_id: uuid.UUID,
        family_id: uuid.UUID,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        token_hash: bytes,
        amr: list[str],
        auth_time: dt.datetime,
        created_at: dt.datetime,
        expires_at: dt.datetime,
    ) -> None:
        await self.uow.execute(
            "INSERT INTO refresh_tokens (id, family_id, user_id, tenant_id, token_hash, amr,"
            " auth_time, status, created_at, expires_at) VALUES (:id, :fam, :u, :t, :h, :amr,"
            " :auth, 'active', :at, :exp)",
            {"id": token_id, "fam": family_id, "u": user_id, "t": tenant_id, "h": token_hash,
             "amr": amr, "auth": auth_time, "at": created_at, "exp": expires_at},
        )  # fmt: skip

    async def by_hash_for_update(self, token_hash: bytes) -> Any:
        return await self.uow.fetch_one(
            "SELECT * FROM refresh_tokens WHERE token_hash = :h FOR UPDATE", {"h": token_hash}
        )

    async def mark_used(self, token_id: uuid.UUID) -> None:
        await self.uow.execute(
            "UPDATE refresh_tokens SET status = 'used' WHERE id = :id", {"id": token_id}
        )

    async def revoke_family(self, family_id: uuid.UUID) -> int:
        result = await self.uow.execute(
            "UPDATE refresh_tokens SET status = 'revoked' WHERE family_id = :f"
            " AND status <> 'revoked'",
            {"f": family_id},
        )
        return result.rowcount
