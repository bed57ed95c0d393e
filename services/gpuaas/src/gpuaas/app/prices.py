"""The price projection (billing.price.v1, inbox consumer) and the minimum runway gate on
new allocations that it feeds."""

import datetime as dt
import uuid

import msgspec

from gpuaas.domain.catalog import SKUS
from gpuaas.domain.runway import covers_runway, price_in_effect, runway_seconds
from gpuaas.store.repository import AllocationRepository, BalanceRepository, PriceRepository
from gpucloud_contracts.events.billing import PriceChanged
from platformkit.consumers import Handler
from platformkit.db import UnitOfWork
from platformkit.envelope import CloudEvent


def price_handler() -> Handler:
    async def apply_price_event(event: CloudEvent, uow: UnitOfWork) -> None:
        price = msgspec.json.decode(event.data, type=PriceChanged)
        await PriceRepository(uow).apply(
            {
                "price_key": price.price_key,
                "tenant_id": price.tenant_id,
                "currency": price.currency,
                "effective_from": price.effective_from,
                "price_id": price.price_id,
                "micros_per_hour": price.micros_per_hour,
                "min_increment_s": price.min_increment_s,
                "version": price.version,
            }
        )

    return apply_price_event


async def runway_shortfall(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    price_key: str,
    quantity: int,
    min_runway_s: int,
    now: dt.datetime,
) -> str | None:
    """Why the tenant's balance cannot carry one more allocation (`quantity` of `price_key`)
    for `min_runway_s`, or None when it can. No balance standing yet, or no known price for
    the new key: not gated (billing parks unpriced usage). Live allocations without a known
    price count as burning nothing."""
    if min_runway_s <= 0:
        return None
    balance = await BalanceRepository(uow).get(tenant_id)
    if balance is None:
        return None
    live = await AllocationRepository(uow).tenant_live_usage(tenant_id)
    usage = [(SKUS[sku].price_key(profile), q) for sku, profile, q in live]
    keys = sorted({price_key, *(k for k, _ in usage)})
    versions = await PriceRepository(uow).candidates(tenant_id, balance["currency"], keys, now)
    rates = {}
    for key in keys:
        v = price_in_effect(versions, key, tenant_id, balance["currency"], now)
        if v is not None:
            rates[key] = v.micros_per_hour
    if price_key not in rates:
        return None
    burn = rates[price_key] * quantity + sum(rates.get(k, 0) * q for k, q in usage)
    available = balance["available_micros"]
    if covers_runway(available, burn, min_runway_s):
        return None
    lasts = runway_seconds(available, burn)
    return (
        f"balance of {available} micro-{balance['currency']} lasts {lasts} s at"
        f" {burn} micros/hour (live allocations plus this one); the minimum runway is"
        f" {min_runway_s} s"
    )
