"""Rating: usage intervals -> balanced usage transactions. Pure: no I/O.

One batch of intervals is rated against the tenants' accounts as they stand (read under
lock by the caller) and the price versions its keys need. Each priced interval becomes one
transaction: a transfer from each paying account (promotional grants by priority, then the
wallet) to platform revenue. Balances are updated in memory as the batch goes, so a grant
used up by one interval is not spent again by the next one of the same batch.
"""

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable, Sequence

import msgspec

from billing.domain.balance import BalanceEvent, Standing, events_for, standing_of
from billing.domain.ledger import (
    Account,
    AccountKind,
    Transfer,
    TransferKind,
    available_micros,
    platform_account_id,
    split_charge,
    usage_transfer_id,
)
from billing.domain.pricing import PriceBook, charge_micros


class Usage(msgspec.Struct, frozen=True, gc=False):
    """The fields of a metering.usage.recorded payload that rating reads. Structs, not
    frozen dataclasses, for the per-interval objects: built once per interval at rating
    rates (see Transfer)."""

    interval_id: uuid.UUID
    allocation_id: uuid.UUID
    tenant_id: uuid.UUID
    project_id: uuid.UUID
    price_key: str
    quantity: int
    started_at: dt.datetime
    ended_at: dt.datetime
    duration_ms: int


@dataclasses.dataclass(slots=True)
class TenantLedger:
    """A tenant's rating state: its accounts and its last announced standing."""

    tenant_id: uuid.UUID
    currency: str
    low_threshold_micros: int
    standing: Standing
    ledger_sequence: int
    wallet: Account
    grants: list[Account]

    def available(self, at: dt.datetime) -> int:
        return available_micros(self.wallet, self.grants, at)


class UsageCharge(msgspec.Struct, frozen=True, gc=False):
    """A rated interval: its transfers carry these details for usage reports."""

    usage: Usage
    billable_seconds: int
    transfers: tuple[Transfer, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class StandingChange:
    tenant_id: uuid.UUID
    currency: str
    available_micros: int
    standing: Standing
    ledger_sequence: int
    events: tuple[BalanceEvent, ...]


@dataclasses.dataclass(slots=True)
class RatedBatch:
    charges: list[UsageCharge]
    unrated: list[Usage]
    free: int = 0

    def transfers(self) -> Iterable[tuple[UsageCharge, Transfer]]:
        for charge in self.charges:
            for transfer in charge.transfers:
                yield charge, transfer


def rate_usage(
    usage: Usage, tenant: TenantLedger, prices: PriceBook
) -> tuple[int, list[Transfer]] | None:
    """Price one interval and say which accounts pay it; None when no price is in effect.
    Moves the amounts between the tenant's in-memory accounts (not revenue's)."""
    price = prices.price_at(usage.price_key, tenant.currency, usage.tenant_id, usage.started_at)
    if price is None:
        return None
    seconds, amount = charge_micros(price, usage.quantity, usage.duration_ms)
    transfers: list[Transfer] = []
    if amount == 0:
        return seconds, transfers
    revenue = platform_account_id(AccountKind.REVENUE, tenant.currency)
    for leg, (account, part) in enumerate(
        split_charge(amount, tenant.wallet, tenant.grants, usage.ended_at)
    ):
        transfers.append(
            Transfer(
                id=usage_transfer_id(usage.interval_id, leg),
                transaction_id=usage.interval_id,
                debit_account_id=account.id,
                credit_account_id=revenue,
                amount_micros=part,
                currency=tenant.currency,
                kind=TransferKind.USAGE,
                tenant_id=usage.tenant_id,
                occurred_at=usage.ended_at,
                leg=leg,
            )
        )
        account.debits_posted += part
    return seconds, transfers


def rate_batch(
    usages: Sequence[Usage], tenants: dict[uuid.UUID, TenantLedger], prices: PriceBook
) -> RatedBatch:
    """Rate intervals in order. The caller has removed intervals already in the ledger."""
    batch = RatedBatch(charges=[], unrated=[])
    for usage in usages:
        tenant = tenants[usage.tenant_id]
        rated = rate_usage(usage, tenant, prices)
        if rated is None:
            batch.unrated.append(usage)
            continue
        seconds, transfers = rated
        if not transfers:
            batch.free += 1
            continue
        batch.charges.append(UsageCharge(usage, seconds, tuple(transfers)))
    return batch


def standing_changes(tenants: Iterable[TenantLedger], at: dt.datetime) -> list[StandingChange]:
    """After a movement: each touched tenant's new standing and the events to announce.
    Advances each tenant's ledger_sequence and standing in place."""
    changes = []
    for tenant in tenants:
        available = tenant.available(at)
        current = standing_of(available, tenant.low_threshold_micros)
        events = events_for(tenant.standing, current)
        tenant.ledger_sequence += 1
        tenant.standing = current
        changes.append(
            StandingChange(
                tenant_id=tenant.tenant_id,
                currency=tenant.currency,
                available_micros=available,
                standing=current,
                ledger_sequence=tenant.ledger_sequence,
                events=tuple(events),
            )
        )
    return changes
