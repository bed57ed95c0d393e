"""Tenant use cases. Each opens one unit of work: the tenant row, its outbox event and
the idempotency record commit together."""

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from gpucloud_contracts.events.iam import TenantCreated, TenantSuspended
from iam.app.events import EVENTS
from iam.domain.tenants import SLUG, Tenant, TenantEvent, TenantStatus
from iam.store.repository import SlugTaken, TenantRepository
from platformkit.db import Database, UnitOfWork
from platformkit.errors import Conflict, NotFound, ValidationFailed
from platformkit.idempotency import IdempotentRequest, StoredResponse, run_once


@dataclass(frozen=True)
class CreateTenant:
    name: str
    slug: str
    idempotency_key: str | None = None


def check_name(field: str, name: str) -> None:
    if not name.strip() or len(name) > 200:
        raise ValidationFailed.for_field(field, "must be 1 to 200 characters")


def check_slug(field: str, slug: str) -> None:
    if not SLUG.match(slug):
        raise ValidationFailed.for_field(
            field, "must be 2-63 lowercase letters, digits or '-', starting alphanumeric"
        )


async def add_tenant(uow: UnitOfWork, tenant: Tenant) -> None:
    """The tenant row and its `iam.tenant.created`, in the caller's transaction."""
    try:
        await TenantRepository(uow).add(tenant)
    except SlugTaken:
        raise Conflict(f"slug {tenant.slug!r} is taken") from None
    await EVENTS.add_event(
        uow,
        TenantEvent.CREATED,
        subject=str(tenant.id),
        tenant=str(tenant.id),
        payload=TenantCreated(
            tenant_id=tenant.id,
            name=tenant.name,
            slug=tenant.slug,
            status=tenant.status.value,
            created_at=tenant.created_at,
        ),
    )


async def create_tenant(
    db: Database, command: CreateTenant, encode: Callable[[Tenant], StoredResponse]
) -> StoredResponse:
    """A replayed Idempotency-Key returns the stored response."""
    check_name("name", command.name)
    check_slug("slug", command.slug)
    request = IdempotentRequest.of(
        "iam.tenants", command.idempotency_key, {"name": command.name, "slug": command.slug}
    )

    async def work(uow: UnitOfWork) -> Tenant:
        tenant = Tenant.new(command.name, command.slug)
        await add_tenant(uow, tenant)
        return tenant

    return await run_once(db, request, work, encode)


async def get_tenant(db: Database, tenant_id: uuid.UUID) -> Tenant:
    async with db.unit_of_work() as uow:
        tenant = await TenantRepository(uow).get(tenant_id)
    if tenant is None:
        raise NotFound(f"tenant {tenant_id} not found")
    return tenant


async def list_tenants(db: Database, limit: int, after: uuid.UUID | None) -> list[Tenant]:
    async with db.unit_of_work() as uow:
        return await TenantRepository(uow).list(limit, after)


async def suspend_tenant(db: Database, tenant_id: uuid.UUID, reason: str) -> Tenant:
    """Suspended tenants get no new tokens; existing access tokens lapse within minutes."""
    async with db.unit_of_work() as uow:
        repo = TenantRepository(uow)
        tenant = await repo.get(tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id} not found")
        if tenant.status == TenantStatus.SUSPENDED:
            return tenant
        await repo.set_status(tenant_id, TenantStatus.SUSPENDED)
        await EVENTS.add_event(
            uow, TenantEvent.SUSPENDED, subject=str(tenant_id), tenant=str(tenant_id),
            payload=TenantSuspended(
                tenant_id=tenant_id, reason=reason, suspended_at=dt.datetime.now(dt.UTC)
            ),
        )  # fmt: skip
        await uow.commit()
    return Tenant(tenant.id, tenant.name, tenant.slug, TenantStatus.SUSPENDED, tenant.created_at)
