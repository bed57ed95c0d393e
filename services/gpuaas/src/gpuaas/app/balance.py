"""The tenant balance projection, fed by billing.balance.v1 (inbox consumer). It gates new
allocations; `billing.balance.exhausted` also releases the tenant's live allocations."""

import datetime as dt

import msgspec

from gpuaas.app.lifecycle import now_utc, release
from gpuaas.settings import GpuaasSettings
from gpuaas.store.repository import AllocationRepository, BalanceRepository
from gpucloud_contracts.events.billing import BalanceChanged
from platformkit.consumers import Handler
from platformkit.db import UnitOfWork
from platformkit.envelope import CloudEvent

BALANCE_TOPIC = "billing.balance.v1"
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
        now = now_utc()
        period = dt.timedelta(seconds=settings.metering_period_s)
        for a in await AllocationRepository(uow).lock_where(
            "tenant_id = :t AND state = ANY(:s)",
            {"t": balance.tenant_id, "s": ["scheduled", "provisioning", "running"]},
            skip_locked=False,  # the stop condition must reach every running allocation
        ):
            await release(uow, a, now=now, period=period, reason="balance_exhausted")

    return apply_balance_event
