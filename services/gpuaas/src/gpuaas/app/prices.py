"""The price projection (billing.price.v1, inbox consumer) and the money gate on new
allocations that it feeds (balance known and not exhausted, price known, minimum runway)."""

import datetime as dt
import uuid

import msgspec

from gpuaas.app.errors import BalanceExhausted, BalanceUnknown, PriceUnknown
from gpuaas.domain.allocations import BALANCE_EXHAUSTED
from gpuaas.domain.catalog import SKUS
from gpuaas.domain.runway import (
    BALANCE_UNKNOWN,
    INSUFFICIENT_RUNWAY,
    PRICE_UNKNOWN,
    money_refusal,
    price_in_effect,
    runway_seconds,
)
from gpuaas.store.repository import AllocationRepository, BalanceRepository, PriceRepository
from gpucloud_contracts.events.billing import PriceChanged
from platformkit.consumers import Handler
from platformkit.db import UnitOfWork
from platformkit.envelope import CloudEvent
from platformkit.errors import ProblemError


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


async def money_gate(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    price_key: str,
    quantity: int,
    min_runway_s: int,
    now: dt.datetime,
    refusing: str,
) -> tuple[ProblemError, str] | None:
    """Why the tenant may not start one more allocation (`quantity` of `price_key`): the
    problem to answer (its detail starting with `refusing`) and the rejection reason, or
    None (`domain.runway.money_refusal` decides; it fails closed). Live allocations without
    a known price count as burning nothing."""
    balance = await BalanceRepository(uow).get(tenant_id)
    if balance is None:
        return BalanceUnknown(
            f"{refusing}: billing has not reported a balance for this tenant yet; top up,"
            " or retry in a moment"
        ), BALANCE_UNKNOWN
    currency = balance["currency"]
    live = await AllocationRepository(uow).tenant_live_usage(tenant_id)
    usage = [(SKUS[sku].price_key(profile), q) for sku, profile, q in live]
    keys = sorted({price_key, *(k for k, _ in usage)})
    versions = await PriceRepository(uow).candidates(tenant_id, currency, keys, now)
    rates = {}
    for key in keys:
        v = price_in_effect(versions, key, tenant_id, currency, now)
        if v is not None:
            rates[key] = v.micros_per_hour
    burn = rates.get(price_key, 0) * quantity + sum(rates.get(k, 0) * q for k, q in usage)
    available = balance["available_micros"]
    reason = money_refusal(balance["standing"], rates.get(price_key), available, burn, min_runway_s)
    if reason == BALANCE_EXHAUSTED:
        return BalanceExhausted(f"{refusing}: balance exhausted"), reason
    if reason == PRICE_UNKNOWN:
        return PriceUnknown(
            f"{refusing}: no price in effect for {price_key} in {currency}: gpuaas has not"
            " seen one from billing (billing.price.v1)"
        ), reason
    if reason == INSUFFICIENT_RUNWAY:
        lasts = runway_seconds(available, burn)
        # The same problem type as an exhausted balance: both mean "top up first".
        return BalanceExhausted(
            f"{refusing}: balance of {available} micro-{currency} lasts {lasts} s at"
            f" {burn} micros/hour (live allocations plus this one); the minimum runway is"
            f" {min_runway_s} s"
        ), reason
    return None
