"""Re-rating of parked usage: intervals that arrived with no price in effect.

Rating never drops an unpriced interval and never prices it at 0: it parks it in
`unrated_usage`. This job (every GPUCLOUD_BILLING_RERATE_INTERVAL_S, or now through
`POST /v1/billing/unrated/rerate`) takes the parked intervals for which a price covering
their start now exists (public, or the tenant's override, in the tenant's currency) and
rates them through the rating use case itself, so each is priced at the version in effect
at its own start, split over promotional credit and wallet, and written under its interval
id: a redelivery of the same interval by Kafka, or a second replica re-rating at the same
time, changes nothing. A re-rated row is kept with `rated_at` set.
"""

import dataclasses
import uuid
from typing import Any

from billing.app.rating import UsageRater, decode_usage
from billing.settings import BillingSettings
from billing.store.ledger import LedgerRepository
from platformkit.db import Database


@dataclasses.dataclass(frozen=True)
class RerateResult:
    rated: int  # left the queue: charged now, or already in the ledger, or free
    still_unrated: int


async def rerate_parked(db: Database, settings: BillingSettings, limit: int = 2000) -> RerateResult:
    """One pass over at most `limit` covered intervals, in one transaction."""
    async with db.unit_of_work() as uow:
        repo = LedgerRepository(uow)
        rows = await repo.covered_parked(limit)
        if not rows:
            return RerateResult(0, 0)
        usages = {r["interval_id"]: (decode_usage(r["payload"]), r["payload"]) for r in rows}
        _, unrated = await UsageRater(settings).rate_usages(usages, uow)
        left = [iid for iid in usages if iid not in set(unrated)]
        if left:
            await repo.mark_rated(left)
        await uow.commit()
    return RerateResult(len(left), len(unrated))


async def list_parked(
    db: Database, tenant_id: uuid.UUID | None, include_rated: bool, limit: int
) -> list[Any]:
    async with db.unit_of_work() as uow:
        return await LedgerRepository(uow).parked(tenant_id, include_rated, limit)
