"""All of iam's tenant queries."""

import uuid

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from iam.domain.tenants import Tenant, TenantStatus
from iam.store.tables import TenantRow
from platformkit.db import UnitOfWork


class SlugTaken(Exception):
    pass


class TenantRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.session = uow.session

    async def add(self, tenant: Tenant) -> None:
        self.session.add(
            TenantRow(
                id=tenant.id,
                name=tenant.name,
                slug=tenant.slug,
                status=tenant.status.value,
                created_at=tenant.created_at,
            )
        )
        try:
            await self.session.flush()
        except IntegrityError as exc:
            raise SlugTaken(tenant.slug) from exc

    async def slug_taken(self, slug: str) -> bool:
        query = select(TenantRow.id).where(TenantRow.slug == slug)
        return (await self.session.exec(query)).first() is not None

    async def get(self, tenant_id: uuid.UUID) -> Tenant | None:
        row = await self.session.get(TenantRow, tenant_id)
        return _to_domain(row) if row else None

    async def set_status(self, tenant_id: uuid.UUID, status: TenantStatus) -> None:
        row = await self.session.get(TenantRow, tenant_id, with_for_update=True)
        if row is not None:
            row.status = status.value
            await self.session.flush()

    async def list(self, limit: int, after: uuid.UUID | None) -> list[Tenant]:
        query = select(TenantRow).order_by(TenantRow.id).limit(limit)
        if after is not None:
            query = query.where(TenantRow.id > after)
        rows = (await self.session.exec(query)).all()
        return [_to_domain(r) for r in rows]


def _to_domain(row: TenantRow) -> Tenant:
    return Tenant(
        id=row.id,
        name=row.name,
        slug=row.slug,
        status=TenantStatus(row.status),
        created_at=row.created_at,
    )
