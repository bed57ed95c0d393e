"""Reconciliation: the provider's settlement report against the ledger's payment entries.

For a window of settlement time, every payment the provider settled must have its
settlement transfer in the ledger with the same amount, and every settlement transfer in
the ledger must be in the provider's report. Each disagreement is recorded once
(`reconciliation_mismatches`), exposed by the API and announced on billing.payment.v1
(`billing.reconciliation.mismatch`). Nothing is corrected: an operator decides.

Runs are started by an operator (`POST /v1/billing/reconciliation/runs`) or by the schedule
(`scheduled_reconciliation`, every GPUCLOUD_BILLING_RECONCILE_INTERVAL_S): the window ends
`grace` before now (a webhook may still be in flight for a payment settled a moment ago) and
reaches `lookback` further back; windows overlap, which is harmless since a mismatch is
recorded once. A replica skips its turn when any replica ran within the last interval.
"""

import dataclasses
import datetime as dt
import uuid
from typing import Any

from billing.app.events import EVENTS
from billing.providers.base import PaymentProvider
from billing.store.payments import PaymentRepository, ReconciliationRepository
from gpucloud_contracts.events.billing import ReconciliationMismatch
from platformkit.db import Database
from platformkit.errors import ValidationFailed
from platformkit.ids import uuid7

MISMATCH_EVENT = "billing.reconciliation.mismatch"


@dataclasses.dataclass(frozen=True)
class Mismatch:
    kind: str
    payment_id: uuid.UUID
    provider_ref: str | None
    provider_amount_micros: int | None
    ledger_amount_micros: int | None


@dataclasses.dataclass(frozen=True)
class RunResult:
    run_id: uuid.UUID
    checked: int
    mismatches: list[Mismatch]


def compare(
    provider_side: dict[uuid.UUID, Any], ledger_side: dict[uuid.UUID, Any]
) -> list[Mismatch]:
    """Pure: both sides keyed by payment id, values with provider_ref and amount_micros."""
    found = []
    for payment_id, p in provider_side.items():
        entry = ledger_side.get(payment_id)
        if entry is None:
            found.append(
                Mismatch("missing_in_ledger", payment_id, p.provider_ref, p.amount_micros, None)
            )
        elif entry["amount_micros"] != p.amount_micros:
            found.append(
                Mismatch(
                    "amount_mismatch",
                    payment_id,
                    p.provider_ref,
                    p.amount_micros,
                    entry["amount_micros"],
                )
            )
    for payment_id, entry in ledger_side.items():
        if payment_id not in provider_side:
            found.append(
                Mismatch(
                    "missing_at_provider",
                    payment_id,
                    entry["provider_ref"],
                    None,
                    entry["amount_micros"],
                )
            )
    return found


async def reconcile(
    db: Database, provider: PaymentProvider, since: dt.datetime, until: dt.datetime
) -> RunResult:
    if until <= since:
        raise ValidationFailed.for_field("until", "must be after since")
    report = await provider.settlement_report(since, until)
    provider_side = {s.payment_id: s for s in report}
    run_id = uuid7()
    async with db.unit_of_work() as uow:
        rows = await PaymentRepository(uow).settlements(
            provider.name, since, until, list(provider_side)
        )
        ledger_side = {r["payment_id"]: r for r in rows}
        mismatches = compare(provider_side, ledger_side)
        checked = len(set(provider_side) | set(ledger_side))
        runs = ReconciliationRepository(uow)
        await runs.add_run(run_id, provider.name, since, until, checked, len(mismatches))
        now = dt.datetime.now(dt.UTC)
        for m in mismatches:
            mismatch_id = uuid7()
            if await runs.add_mismatch(mismatch_id, run_id, provider.name, m):
                await EVENTS.add_event(
                    uow,
                    MISMATCH_EVENT,
                    subject=str(m.payment_id),
                    payload=ReconciliationMismatch(
                        mismatch_id=mismatch_id,
                        run_id=run_id,
                        kind=m.kind,
                        payment_id=m.payment_id,
                        provider=provider.name,
                        provider_ref=m.provider_ref,
                        provider_amount_micros=m.provider_amount_micros,
                        ledger_amount_micros=m.ledger_amount_micros,
                        detected_at=now,
                    ),
                )
        await uow.commit()
    return RunResult(run_id, checked, mismatches)


@dataclasses.dataclass(frozen=True)
class Schedule:
    interval_s: float
    lookback_s: float
    grace_s: float


async def scheduled_reconciliation(
    db: Database, provider: PaymentProvider, schedule: Schedule, now: dt.datetime | None = None
) -> RunResult | None:
    """One scheduled run, or None when another run (any replica, or an operator's) was
    recorded for this provider within the last interval."""
    now = now or dt.datetime.now(dt.UTC)
    after = now - dt.timedelta(seconds=schedule.interval_s * 0.9)
    async with db.unit_of_work() as uow:
        if await ReconciliationRepository(uow).ran_since(provider.name, after):
            return None
    until = now - dt.timedelta(seconds=schedule.grace_s)
    return await reconcile(db, provider, until - dt.timedelta(seconds=schedule.lookback_s), until)


async def list_runs(db: Database, limit: int) -> list[Any]:
    async with db.unit_of_work() as uow:
        return await ReconciliationRepository(uow).runs(limit)


async def list_mismatches(db: Database, limit: int) -> list[Any]:
    async with db.unit_of_work() as uow:
        return await ReconciliationRepository(uow).mismatches(limit)
