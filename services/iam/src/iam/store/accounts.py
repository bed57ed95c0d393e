"""Queries on pending email verifications and invitations (tokens stored as SHA-256)."""

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from platformkit.db import UnitOfWork


@dataclass(frozen=True)
class PendingVerification:
    id: uuid.UUID
    purpose: str
    email: str
    password_hash: str
    tenant_name: str | None
    tenant_slug: str | None

    def __repr__(self) -> str:  # never render the hash
        return f"PendingVerification(id={self.id}, purpose={self.purpose!r})"


@dataclass(frozen=True)
class Invitation:
    id: uuid.UUID
    tenant_id: uuid.UUID
    project_id: uuid.UUID | None
    email: str
    role: str
    invited_by: uuid.UUID | None
    created_at: dt.datetime
    expires_at: dt.datetime
    accepted_at: dt.datetime | None
    revoked_at: dt.datetime | None


class VerificationRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def add(
        self, *, id: uuid.UUID, token_hash: bytes, purpose: str, email: str,
        password_hash: str, tenant_name: str | None, tenant_slug: str | None,
        created_at: dt.datetime, expires_at: dt.datetime,
    ) -> None:  # fmt: skip
        await self.uow.execute(
            "INSERT INTO email_verifications (id, token_hash, purpose, email, password_hash,"
            " tenant_name, tenant_slug, created_at, expires_at)"
            " VALUES (:id, :h, :p, :e, :ph, :tn, :ts, :c, :x)",
            {"id": id, "h": token_hash, "p": purpose, "e": email, "ph": password_hash,
             "tn": tenant_name, "ts": tenant_slug, "c": created_at, "x": expires_at},
        )  # fmt: skip

    async def consume(self, token_hash: bytes, at: dt.datetime) -> PendingVerification | None:
        """Spend a usable link atomically: it works once, even under a race."""
        row = await self.uow.fetch_one(
            "UPDATE email_verifications SET used_at = :at"
            " WHERE token_hash = :h AND used_at IS NULL AND expires_at > :at"
            " RETURNING id, purpose, email, password_hash, tenant_name, tenant_slug",
            {"h": token_hash, "at": at},
        )
        if row is None:
            return None
        return PendingVerification(
            row["id"], row["purpose"], row["email"], row["password_hash"],
            row["tenant_name"], row["tenant_slug"],
        )  # fmt: skip

    async def prune(self, before: dt.datetime) -> int:
        rows = await self.uow.fetch_all(
            "DELETE FROM email_verifications WHERE expires_at < :b RETURNING id", {"b": before}
        )
        return len(rows)


_INVITATION = (
    "id, tenant_id, project_id, email, role, invited_by, created_at, expires_at, accepted_at,"
    " revoked_at"
)


def _invitation(row: Any) -> Invitation:
    return Invitation(
        row["id"], row["tenant_id"], row["project_id"], row["email"], row["role"],
        row["invited_by"], row["created_at"], row["expires_at"], row["accepted_at"],
        row["revoked_at"],
    )  # fmt: skip


class InvitationRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def add(self, invitation: Invitation, token_hash: bytes) -> None:
        i = invitation
        await self.uow.execute(
            "INSERT INTO invitations (id, token_hash, tenant_id, project_id, email, role,"
            " invited_by, created_at, expires_at)"
            " VALUES (:id, :h, :t, :p, :e, :r, :by, :c, :x)",
            {"id": i.id, "h": token_hash, "t": i.tenant_id, "p": i.project_id, "e": i.email,
             "r": i.role, "by": i.invited_by, "c": i.created_at, "x": i.expires_at},
        )  # fmt: skip

    async def by_token_for_update(self, token_hash: bytes) -> Invitation | None:
        row = await self.uow.fetch_one(
            f"SELECT {_INVITATION} FROM invitations WHERE token_hash = :h FOR UPDATE",  # noqa: S608
            {"h": token_hash},
        )
        return _invitation(row) if row else None

    async def get(self, tenant_id: uuid.UUID, invitation_id: uuid.UUID) -> Invitation | None:
        row = await self.uow.fetch_one(
            f"SELECT {_INVITATION} FROM invitations WHERE id = :id AND tenant_id = :t",  # noqa: S608
            {"id": invitation_id, "t": tenant_id},
        )
        return _invitation(row) if row else None

    async def of_tenant(self, tenant_id: uuid.UUID) -> list[Invitation]:
        """The tenant's invitations (its projects' too), newest first."""
        rows = await self.uow.fetch_all(
            f"SELECT {_INVITATION} FROM invitations WHERE tenant_id = :t"  # noqa: S608
            " ORDER BY created_at DESC LIMIT 500",
            {"t": tenant_id},
        )
        return [_invitation(r) for r in rows]

    async def accept(self, invitation_id: uuid.UUID, user_id: uuid.UUID, at: dt.datetime) -> None:
        await self.uow.execute(
            "UPDATE invitations SET accepted_at = :at, accepted_by = :u WHERE id = :id",
            {"id": invitation_id, "u": user_id, "at": at},
        )

    async def revoke_pending(
        self, tenant_id: uuid.UUID, project_id: uuid.UUID | None, email: str, at: dt.datetime
    ) -> None:
        await self.uow.execute(
            "UPDATE invitations SET revoked_at = :at WHERE tenant_id = :t"
            " AND project_id IS NOT DISTINCT FROM :p AND email = :e"
            " AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > :at",
            {"t": tenant_id, "p": project_id, "e": email, "at": at},
        )

    async def revoke(self, invitation_id: uuid.UUID, at: dt.datetime) -> None:
        await self.uow.execute(
            "UPDATE invitations SET revoked_at = :at WHERE id = :id AND accepted_at IS NULL",
            {"id": invitation_id, "at": at},
        )
