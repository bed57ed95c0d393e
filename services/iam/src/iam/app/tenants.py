"""Tenant use cases. Each opens one unit of work: the tenant row, its outbox event and
the idempotency record commit together."""

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from gpucloud_contracts.events.iam import TenantCreated, TenantSuspended
from iam.domain.tenants import SLUG, TENANT_TOPIC, Tenant, TenantEvent, TenantStatus
from iam.store.repository import SlugTaken, TenantRepository
from platformkit import idempotency
from platformkit.db import Database
from platformkit.errors import Conflict, NotFound, ValidationFailed
from platformkit.outbox import add_event


@dataclass(frozen=True)
class CreateTenant:
    name: str
    slug: str
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Created:
    tenant: Tenant | None
    replay: idempotency.StoredResponse | None = None


def validate(command: CreateTenant) -> None:
    if not command.name.strip() or len(command.name) > 200:
        raise ValidationFailed.for_field("name", "must be 1 to 200 characters")
    if not SLUG.match(command.slug):
        raise ValidationFailed.for_field(
            "slug", "must be 2-63 lowercase letters, digits or '-', starting alphanumeric"
        )


async def create_tenant(
    db: Database, command: CreateTenant, render: Callable[[Tenant], bytes]
) -> tuple[int, bytes]:
    """Returns (status, body) so a replayed Idempotency-Key returns the stored bytes."""
    validate(command)
    body_hash = idempotency.request_hash(
        msgspec.json.encode({"name": command.name, "slug": command.slug})
    )
    async with db.unit_of_work() as uow:
        if command.idempotency_key:
            stored = await idempotency.find(uow, "iam.tenants", command.idempotency_key, body_hash)
            if stored is not None:
                return stored.status, stored.body
        tenant = Tenant.new(command.name, command.slug)
        try:
            await TenantRepository(uow).add(tenant)
        except SlugTaken:
            raise Conflict(f"slug {command.slug!r} is taken") from None
        await add_event(
            uow,
            topic=TENANT_TOPIC,
            type=TenantEvent.CREATED,
            source="iam",
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
        body = render(tenant)
        if command.idempotency_key:
            await idempotency.remember(
                uow, "iam.tenants", command.idempotency_key, body_hash, 201, body
            )
        await uow.commit()
    return 201, body


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
        await add_event(
            uow, topic=TENANT_TOPIC, type=TenantEvent.SUSPENDED, source="iam",
            subject=str(tenant_id), tenant=str(tenant_id),
            payload=TenantSuspended(
                tenant_id=tenant_id, reason=reason, suspended_at=dt.datetime.now(dt.UTC)
            ),
        )  # fmt: skip
        await uow.commit()
    return Tenant(tenant.id, tenant.name, tenant.slug, TenantStatus.SUSPENDED, tenant.created_at)
