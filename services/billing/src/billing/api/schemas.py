"""Request and response bodies of billing's HTTP API (money in integer micro-units)."""

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

Micros = Annotated[int, msgspec.Meta(ge=1, le=10**15)]


class TopUpCreate(msgspec.Struct, forbid_unknown_fields=True):
    amount_micros: Micros
    reference: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class GrantCreate(msgspec.Struct, forbid_unknown_fields=True):
    amount_micros: Micros
    expires_at: Annotated[dt.datetime, msgspec.Meta(tz=True)]
    priority: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0


class PriceCreate(msgspec.Struct, forbid_unknown_fields=True):
    price_key: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    micros_per_gpu_hour: Annotated[int, msgspec.Meta(ge=0, le=10**12)]
    effective_from: Annotated[dt.datetime, msgspec.Meta(tz=True)]
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")] = "USD"
    tenant_id: uuid.UUID | None = None
    min_increment_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)] = 1


class TransferOut(msgspec.Struct, omit_defaults=True):
    id: uuid.UUID
    transaction_id: uuid.UUID
    kind: str
    debit_account_id: uuid.UUID
    credit_account_id: uuid.UUID
    amount_micros: int
    currency: str
    occurred_at: dt.datetime
    leg: int = 0
    # The transfer's position in its tenant's ledger (1, 2, ... in commit order): the
    # `after` cursor of GET .../ledger.
    seq: int | None = None
    project_id: uuid.UUID | None = None
    allocation_id: uuid.UUID | None = None
    price_key: str | None = None
    quantity: int | None = None
    billable_seconds: int | None = None
    reverses: uuid.UUID | None = None
    posted_at: dt.datetime | None = None


class GrantOut(msgspec.Struct):
    id: uuid.UUID
    granted_micros: int
    remaining_micros: int
    priority: int
    expires_at: dt.datetime | None


class BalanceOut(msgspec.Struct):
    tenant_id: uuid.UUID
    currency: str
    available_micros: int
    wallet_micros: int
    standing: Literal["ok", "low", "exhausted"]
    low_threshold_micros: int
    ledger_sequence: int
    grants: list[GrantOut]


class LedgerPage(msgspec.Struct):
    items: list[TransferOut]
    next_after: int | None = None


class ProjectUsage(msgspec.Struct):
    project_id: uuid.UUID | None
    price_key: str | None
    intervals: int
    gpu_seconds: int
    charged_micros: int
    reversed_micros: int
    net_micros: int


class UsageReport(msgspec.Struct):
    tenant_id: uuid.UUID
    since: dt.datetime
    until: dt.datetime
    items: list[ProjectUsage]


class GrantCreated(msgspec.Struct):
    grant_id: uuid.UUID
    transfer: TransferOut


class ReversalOut(msgspec.Struct):
    transaction_id: uuid.UUID
    transfers: list[TransferOut]


class PriceOut(msgspec.Struct):
    id: uuid.UUID
    price_key: str
    currency: str
    micros_per_gpu_hour: int
    min_increment_s: int
    effective_from: dt.datetime
    tenant_id: uuid.UUID | None = None


class AccountDifferenceOut(msgspec.Struct):
    account_id: str
    kind: str | None
    tenant_id: str | None
    cached_debits: int | None
    cached_credits: int | None
    derived_debits: int
    derived_credits: int


class CurrencyTotalOut(msgspec.Struct):
    currency: str
    net_micros: int
    accounts: int


class VerificationOut(msgspec.Struct):
    ok: bool
    transfers: int
    differences: list[AccountDifferenceOut]
    currencies: list[CurrencyTotalOut]
