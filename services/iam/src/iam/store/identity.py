"""All of iam's queries on users, projects, memberships, service accounts and API keys."""

import datetime as dt
import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError

from iam.domain.identity import ApiKey, Membership, Project, ServiceAccount, User
from platformkit.db import UnitOfWork


class AlreadyExists(Exception):
    pass


async def _insert(uow: UnitOfWork, sql: str, params: dict[str, Any]) -> None:
    try:
        async with uow.session.begin_nested():
            await uow.execute(sql, params)
    except IntegrityError as exc:
        raise AlreadyExists(str(exc.orig)) from exc


class UserRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def add(self, user: User, password_hash: str) -> None:
        await _insert(
            self.uow,
            "INSERT INTO users (id, email, password_hash, created_at)"
            " VALUES (:id, :email, :hash, :at)",
            {"id": user.id, "email": user.email, "hash": password_hash, "at": user.created_at},
        )

    async def by_email(self, email: str) -> tuple[User, str] | None:
        row = await self.uow.fetch_one("SELECT * FROM users WHERE email = :e", {"e": email})
        return (
            (User(row["id"], row["email"], row["created_at"]), row["password_hash"])
            if row
            else None
        )

    async def get(self, user_id: uuid.UUID) -> User | None:
        row = await self.uow.fetch_one("SELECT * FROM users WHERE id = :id", {"id": user_id})
        return User(row["id"], row["email"], row["created_at"]) if row else None

    async def set_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None:
        await self.uow.execute(
            "UPDATE users SET password_hash = :h WHERE id = :id",
            {"h": password_hash, "id": user_id},
        )


class ProjectRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def add(self, project: Project) -> None:
        await _insert(
            self.uow,
            "INSERT INTO projects (id, tenant_id, name, slug, created_at)"
            " VALUES (:id, :tenant, :name, :slug, :at)",
            {
                "id": project.id,
                "tenant": project.tenant_id,
                "name": project.name,
                "slug": project.slug,
                "at": project.created_at,
            },
        )

    async def get(self, tenant_id: uuid.UUID, project_id: uuid.UUID) -> Project | None:
        row = await self.uow.fetch_one(
            "SELECT * FROM projects WHERE id = :id AND tenant_id = :t",
            {"id": project_id, "t": tenant_id},
        )
        return _project(row) if row else None

    async def list(self, tenant_id: uuid.UUID) -> list[Project]:
        rows = await self.uow.fetch_all(
            "SELECT * FROM projects WHERE tenant_id = :t ORDER BY id", {"t": tenant_id}
        )
        return [_project(r) for r in rows]


def _project(row: Any) -> Project:
    return Project(row["id"], row["tenant_id"], row["name"], row["slug"], row["created_at"])


class MembershipRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def add(self, m: Membership) -> None:
        await _insert(
            self.uow,
            "INSERT INTO memberships (id, tenant_id, project_id, principal_id, principal_kind,"
            " role, created_at) VALUES (:id, :t, :p, :pid, :kind, :role, :at)",
            {
                "id": m.id,
                "t": m.tenant_id,
                "p": m.project_id,
                "pid": m.principal_id,
                "kind": m.principal_kind,
                "role": m.role,
                "at": m.created_at,
            },
        )

    async def in_scope(
        self, tenant_id: uuid.UUID, principal_id: uuid.UUID, project_id: uuid.UUID | None
    ) -> Membership | None:
        row = await self.uow.fetch_one(
            "SELECT * FROM memberships WHERE tenant_id = :t AND principal_id = :pid"
            " AND project_id IS NOT DISTINCT FROM :p FOR UPDATE",
            {"t": tenant_id, "pid": principal_id, "p": project_id},
        )
        return _membership(row) if row else None

    async def get(self, tenant_id: uuid.UUID, membership_id: uuid.UUID) -> Membership | None:
        row = await self.uow.fetch_one(
            "SELECT * FROM memberships WHERE id = :id AND tenant_id = :t FOR UPDATE",
            {"id": membership_id, "t": tenant_id},
        )
        return _membership(row) if row else None

    async def delete(self, membership_id: uuid.UUID) -> None:
        await self.uow.execute("DELETE FROM memberships WHERE id = :id", {"id": membership_id})

    async def count_owners(self, tenant_id: uuid.UUID) -> int:
        row = await self.uow.fetch_one(
            "SELECT count(*) AS n FROM memberships WHERE tenant_id = :t AND project_id IS NULL"
            " AND role = 'owner'",
            {"t": tenant_id},
        )
        return int(row["n"])

    async def of_tenant(
        self, tenant_id: uuid.UUID, project_id: uuid.UUID | None = None
    ) -> list[tuple[Membership, str | None]]:
        """Memberships with the user's email (None for service accounts)."""
        rows = await self.uow.fetch_all(
            "SELECT m.*, u.email FROM memberships m LEFT JOIN users u ON u.id = m.principal_id"
            " WHERE m.tenant_id = :t AND (CAST(:p AS uuid) IS NULL OR m.project_id = :p)"
            " ORDER BY m.id",
            {"t": tenant_id, "p": project_id},
        )
        return [(_membership(r), r["email"]) for r in rows]

    async def of_principal(self, principal_id: uuid.UUID) -> list[Membership]:
        rows = await self.uow.fetch_all(
            "SELECT * FROM memberships WHERE principal_id = :pid ORDER BY id", {"pid": principal_id}
        )
        return [_membership(r) for r in rows]


def _membership(row: Any) -> Membership:
    return Membership(
        row["id"],
        row["tenant_id"],
        row["project_id"],
        row["principal_id"],
        row["principal_kind"],
        row["role"],
        row["created_at"],
    )


class ServiceAccountRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def add(self, sa: ServiceAccount) -> None:
        await _insert(
            self.uow,
            "INSERT INTO service_accounts (id, tenant_id, project_id, name, created_at)"
            " VALUES (:id, :t, :p, :name, :at)",
            {
                "id": sa.id,
                "t": sa.tenant_id,
                "p": sa.project_id,
                "name": sa.name,
                "at": sa.created_at,
            },
        )

    async def get(
        self, tenant_id: uuid.UUID, project_id: uuid.UUID, sa_id: uuid.UUID
    ) -> ServiceAccount | None:
        row = await self.uow.fetch_one(
            "SELECT * FROM service_accounts WHERE id = :id AND tenant_id = :t AND project_id = :p",
            {"id": sa_id, "t": tenant_id, "p": project_id},
        )
        return _sa(row) if row else None

    async def by_id(self, sa_id: uuid.UUID) -> ServiceAccount | None:
        row = await self.uow.fetch_one(
            "SELECT * FROM service_accounts WHERE id = :id", {"id": sa_id}
        )
        return _sa(row) if row else None

    async def of_project(self, tenant_id: uuid.UUID, project_id: uuid.UUID) -> list[ServiceAccount]:
        rows = await self.uow.fetch_all(
            "SELECT * FROM service_accounts WHERE tenant_id = :t AND project_id = :p ORDER BY id",
            {"t": tenant_id, "p": project_id},
        )
        return [_sa(r) for r in rows]

    async def add_key(self, key: ApiKey, secret_hash: bytes) -> None:
        await self.uow.execute(
            "INSERT INTO api_keys (id, service_account_id, prefix, secret_hash, created_at,"
            " expires_at) VALUES (:id, :sa, :prefix, :hash, :at, :exp)",
            {
                "id": key.id,
                "sa": key.service_account_id,
                "prefix": key.prefix,
                "hash": secret_hash,
                "at": key.created_at,
                "exp": key.expires_at,
            },
        )

    async def key(self, key_id: uuid.UUID) -> tuple[ApiKey, bytes] | None:
        row = await self.uow.fetch_one("SELECT * FROM api_keys WHERE id = :id", {"id": key_id})
        return (_key(row), bytes(row["secret_hash"])) if row else None

    async def keys_of(self, sa_id: uuid.UUID) -> list[ApiKey]:
        rows = await self.uow.fetch_all(
            "SELECT * FROM api_keys WHERE service_account_id = :sa ORDER BY id", {"sa": sa_id}
        )
        return [_key(r) for r in rows]

    async def revoke_key(self, key_id: uuid.UUID, at: dt.datetime) -> None:
        await self.uow.execute(
            "UPDATE api_keys SET revoked_at = :at WHERE id = :id AND revoked_at IS NULL",
            {"id": key_id, "at": at},
        )

    async def shorten_key(self, key_id: uuid.UUID, expires_at: dt.datetime) -> None:
        await self.uow.execute(
            "UPDATE api_keys SET expires_at = LEAST(expires_at, :exp) WHERE id = :id",
            {"id": key_id, "exp": expires_at},
        )


def _sa(row: Any) -> ServiceAccount:
    return ServiceAccount(
        row["id"], row["tenant_id"], row["project_id"], row["name"], row["created_at"]
    )


def _key(row: Any) -> ApiKey:
    return ApiKey(
        row["id"],
        row["service_account_id"],
        row["prefix"],
        row["created_at"],
        row["expires_at"],
        row["revoked_at"],
    )
