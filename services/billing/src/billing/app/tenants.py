"""The tenant projection: iam.tenant.v1 -> billing's tenants, each opened with its wallet.

Runs in the kit's inbox consumer (one event, one transaction, deduplicated by event id).
Rating may have opened the tenant already (usage overtook the tenant event); then only the
descriptive fields are filled in.
"""

import datetime as dt

from billing.app.balances import announce_standings
from billing.settings import BillingSettings
from billing.store.ledger import LedgerRepository
from gpucloud_contracts.events.iam import TenantCreated, TenantSuspended
from platformkit.db import UnitOfWork
from platformkit.envelope import CloudEvent


def tenant_projection(settings: BillingSettings):
    async def project_tenant(event: CloudEvent, uow: UnitOfWork) -> None:
        if event.type == "iam.tenant.created":
            created = event.decode(TenantCreated)
            repo = LedgerRepository(uow)
            opened = await repo.open_tenants(
                [created.tenant_id], settings.currency, settings.low_threshold_micros
            )
            await repo.describe_tenant(
                created.tenant_id, created.name, created.slug, created.status
            )
            if opened:
                # A new tenant starts exhausted (nothing prepaid): say so, so gpuaas's
                # projection holds a standing for every tenant from its first moment.
                locked = await repo.lock_tenants(opened)
                ledgers = await repo.tenant_ledgers(locked)
                await announce_standings(uow, list(ledgers.values()), dt.datetime.now(dt.UTC))
        elif event.type == "iam.tenant.suspended":
            suspended = event.decode(TenantSuspended)
            await LedgerRepository(uow).suspend_tenant(suspended.tenant_id)

    return project_tenant
