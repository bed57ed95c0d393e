"""The tenant balance projection, fed by billing.balance.v1 (inbox consumer). It gates new
allocations; `billing.balance.exhausted` also releases the tenant's live allocations."""

import msgspec

from gpuaas.app.lifecycle import Lifecycle
from gpuaas.domain.allocations import BALANCE_EXHAUSTED, DESIRED_ON_NODE, release_steps
from gpuaas.settings import GpuaasSettings
from gpuaas.store.repository import AllocationRepository, BalanceRepository
from gpucloud_contracts.events.billing import BalanceChanged
from platformkit.consumers import Handler
from platformkit.db import UnitOfWork
from platformkit.envelope import CloudEvent

EXHAUSTED = "billing.balance.exhausted"


def balance_handler(settings: GpuaasSettings) -> Handler:
    async def apply_balance_event(event: CloudEvent, uow: UnitOfWork) -> None:
        balance = msgspec.json.decode(event.data, type=BalanceChanged)
        applied = await BalanceRepository(uow).apply(
            {
                "tenant_id": balance.tenant_id,
                "standing": balance.standing,
                "available_micros": balance.available_micros,
                "currency": balance.currency,
                "ledger_sequence": balance.ledger_sequence,
                "as_of": balance.as_of,
            }
        )
        # An older (reordered) event changes nothing, not even a release.
        if not applied or (event.type != EXHAUSTED and balance.standing != "exhausted"):
            return
        life = Lifecycle(uow, settings)
        repo = AllocationRepository(uow)
        for a in await repo.lock_of_tenant(balance.tenant_id, DESIRED_ON_NODE):
            await life.apply(a, release_steps(a.state, BALANCE_EXHAUSTED))

    return apply_balance_event
