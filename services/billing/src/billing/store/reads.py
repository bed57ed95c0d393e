"""billing's read queries for the API: balances, ledger entries, usage per project, prices."""

import datetime as dt
import uuid
from typing import Any

from platformkit.db import UnitOfWork


class BillingReads:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def tenant(self, tenant_id: uuid.UUID) -> Any:
        return await self.uow.fetch_one(
            "SELECT id, currency, standing, ledger_sequence, low_threshold_micros FROM tenants"
            " WHERE id = :id",
            {"id": tenant_id},
        )

    async def accounts(self, tenant_id: uuid.UUID) -> list[Any]:
        return await self.uow.fetch_all(
            "SELECT id, kind, currency, priority, expires_at, debits_posted, credits_posted,"
            " created_at FROM accounts WHERE tenant_id = :t ORDER BY kind DESC, created_at",
            {"t": tenant_id},
        )

    async def entries(self, tenant_id: uuid.UUID, after: int, limit: int) -> list[Any]:
        """The tenant's transfers after a ledger position, in position (= commit) order."""
        return await self.uow.fetch_all(
            "SELECT tenant_seq AS seq, id, transaction_id, kind, debit_account_id,"
            " credit_account_id, amount_micros, currency, leg, project_id, allocation_id,"
            " price_key, quantity,"
            " billable_seconds, reverses, occurred_at, posted_at FROM transfers"
            " WHERE tenant_id = :t AND tenant_seq > :after ORDER BY tenant_seq LIMIT :limit",
            {"t": tenant_id, "after": after, "limit": limit},
        )

    async def usage_by_project(
        self, tenant_id: uuid.UUID, since: dt.datetime, until: dt.datetime
    ) -> list[Any]:
        """Usage charges per project and price key over [since, until) by interval end;
        a reversed charge counts in `reversed_micros`, not in the net."""
        return await self.uow.fetch_all(
            "SELECT u.project_id, u.price_key,"
            " count(*) FILTER (WHERE u.leg = 0) AS intervals,"
            " coalesce(sum(u.quantity * u.billable_seconds) FILTER (WHERE u.leg = 0), 0)::bigint"
            "   AS gpu_seconds,"
            " sum(u.amount_micros)::bigint AS charged_micros,"
            " coalesce(sum(r.amount_micros), 0)::bigint AS reversed_micros"
            " FROM transfers u LEFT JOIN transfers r"
            "   ON r.tenant_id = u.tenant_id AND r.reverses = u.id"
            " WHERE u.tenant_id = :t AND u.kind = 'usage'"
            "   AND u.occurred_at >= :since AND u.occurred_at < :until"
            " GROUP BY u.project_id, u.price_key ORDER BY u.project_id, u.price_key",
            {"t": tenant_id, "since": since, "until": until},
        )

    async def prices(self, tenant_id: uuid.UUID | None) -> list[Any]:
        return await self.uow.fetch_all(
            "SELECT id, price_key, currency, tenant_id, micros_per_gpu_hour, min_increment_s,"
            " effective_from FROM prices WHERE tenant_id IS NULL"
            " OR tenant_id = CAST(:t AS uuid) ORDER BY price_key, effective_from",
            {"t": tenant_id},
        )


_EFFECT = (
    "CASE WHEN ca.tenant_id = :t THEN t.amount_micros ELSE 0 END"
    " - CASE WHEN da.tenant_id = :t THEN t.amount_micros ELSE 0 END"
)


class StatementReads:
    """A tenant's movements as its own accounts saw them (credit +, debit -), by posting
    time, so a statement's totals are exactly the ledger's movements in the period."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def balance_before(self, tenant_id: uuid.UUID, at: dt.datetime) -> int:
        row = await self.uow.fetch_one(
            f"SELECT coalesce(sum({_EFFECT}), 0)::bigint AS b FROM transfers t"  # noqa: S608
            " JOIN accounts da ON da.id = t.debit_account_id"
            " JOIN accounts ca ON ca.id = t.credit_account_id"
            " WHERE t.tenant_id = :t AND t.posted_at < :at",
            {"t": tenant_id, "at": at},
        )
        return row["b"]

    async def lines(self, tenant_id: uuid.UUID, start: dt.datetime, end: dt.datetime) -> list:
        return await self.uow.fetch_all(
            "SELECT t.kind, o.kind AS reverses_kind,"  # noqa: S608
            " coalesce(t.price_key, o.price_key) AS price_key,"
            " coalesce(t.project_id, o.project_id) AS project_id,"
            " count(*) FILTER (WHERE t.kind = 'usage' AND t.leg = 0) AS intervals,"
            " coalesce(sum(t.quantity * t.billable_seconds)"
            "   FILTER (WHERE t.kind = 'usage' AND t.leg = 0), 0)::bigint AS gpu_seconds,"
            f" sum({_EFFECT})::bigint AS amount_micros"
            " FROM transfers t"
            " JOIN accounts da ON da.id = t.debit_account_id"
            " JOIN accounts ca ON ca.id = t.credit_account_id"
            " LEFT JOIN transfers o ON t.kind = 'reversal' AND o.id = t.reverses"
            " WHERE t.tenant_id = :t AND t.posted_at >= :start AND t.posted_at < :end"
            " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
            {"t": tenant_id, "start": start, "end": end},
        )
