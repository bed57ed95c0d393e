"""Monthly statements: per tenant per month, line items per SKU/MIG profile and project, as
JSON or CSV. Built from the ledger by posting time, so opening + the sum of every line =
closing, and each figure is a ledger movement (a late interval appears in the month it was
posted; a reversal on the line of what it reverses)."""

import csv
import dataclasses
import datetime as dt
import io
import re
import uuid

from billing.store.reads import BillingReads, StatementReads
from platformkit.db import Database
from platformkit.errors import NotFound, ValidationFailed

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclasses.dataclass(frozen=True)
class StatementLine:
    kind: str  # usage | top_up | grant | expiry | reversal
    price_key: str | None
    sku: str | None
    mig_profile: str | None
    project_id: uuid.UUID | None
    intervals: int
    gpu_seconds: int
    amount_micros: int  # + credits the tenant, - charges it


@dataclasses.dataclass(frozen=True)
class Statement:
    tenant_id: uuid.UUID
    month: str
    currency: str
    period_start: dt.datetime
    period_end: dt.datetime
    opening_micros: int
    closing_micros: int
    usage_micros: int
    lines: list[StatementLine]


def month_bounds(month: str) -> tuple[dt.datetime, dt.datetime]:
    match = _MONTH.match(month)
    if not match:
        raise ValidationFailed.for_field("month", "must be YYYY-MM")
    year, mon = int(match[1]), int(match[2])
    start = dt.datetime(year, mon, 1, tzinfo=dt.UTC)
    end = dt.datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=dt.UTC)
    return start, end


def _sku_profile(price_key: str | None) -> tuple[str | None, str | None]:
    parts = (price_key or "").split(":")
    if parts[0] == "gpu" and len(parts) == 2:
        return parts[1], None
    if parts[0] == "mig" and len(parts) == 3:
        return parts[1], parts[2]
    return None, None


async def monthly_statement(db: Database, tenant_id: uuid.UUID, month: str) -> Statement:
    start, end = month_bounds(month)
    async with db.unit_of_work(snapshot=True) as uow:
        tenant = await BillingReads(uow).tenant(tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id} is not known to billing")
        reads = StatementReads(uow)
        opening = await reads.balance_before(tenant_id, start)
        rows = await reads.lines(tenant_id, start, end)
    lines = []
    for r in rows:
        sku, profile = _sku_profile(r["price_key"])
        lines.append(
            StatementLine(
                kind=r["kind"],
                price_key=r["price_key"],
                sku=sku,
                mig_profile=profile,
                project_id=r["project_id"],
                intervals=r["intervals"],
                gpu_seconds=r["gpu_seconds"],
                amount_micros=r["amount_micros"],
            )
        )
    usage = sum(
        line.amount_micros
        for line, r in zip(lines, rows, strict=True)
        if line.kind == "usage" or r["reverses_kind"] == "usage"
    )
    return Statement(
        tenant_id=tenant_id,
        month=month,
        currency=tenant["currency"],
        period_start=start,
        period_end=end,
        opening_micros=opening,
        closing_micros=opening + sum(line.amount_micros for line in lines),
        usage_micros=usage,
        lines=lines,
    )


CSV_COLUMNS = (
    "kind",
    "price_key",
    "sku",
    "mig_profile",
    "project_id",
    "intervals",
    "gpu_seconds",
    "amount_micros",
)


def statement_csv(statement: Statement) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["tenant_id", statement.tenant_id, "month", statement.month, "currency", statement.currency]
    )
    writer.writerow(["opening_micros", statement.opening_micros])
    writer.writerow(CSV_COLUMNS)
    for line in statement.lines:
        writer.writerow(["" if getattr(line, c) is None else getattr(line, c) for c in CSV_COLUMNS])
    writer.writerow(["closing_micros", statement.closing_micros])
    return out.getvalue()
