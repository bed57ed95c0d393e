"""billing's queries for payments, the provider's webhook deliveries, refunds and
reconciliation runs. Repositories run in the caller's unit of work; they never commit."""

import datetime as dt
import uuid
from typing import Any

from billing.domain.payments import PaymentStatus, RefundStatus
from platformkit.db import UnitOfWork

_PAYMENT = "SELECT * FROM payments WHERE id = :id"


class PaymentRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def get(self, payment_id: uuid.UUID, *, lock: bool = False) -> Any:
        return await self.uow.fetch_one(
            _PAYMENT + (" FOR UPDATE" if lock else ""), {"id": payment_id}
        )

    async def of_tenant(
        self, tenant_id: uuid.UUID, payment_id: uuid.UUID, *, lock: bool = False
    ) -> Any:
        return await self.uow.fetch_one(
            _PAYMENT + " AND tenant_id = :t" + (" FOR UPDATE" if lock else ""),
            {"id": payment_id, "t": tenant_id},
        )

    async def add(
        self, payment_id: uuid.UUID, tenant_id: uuid.UUID, amount: int, currency: str, provider: str
    ) -> None:
        await self.uow.execute(
            "INSERT INTO payments (id, tenant_id, amount_micros, currency, provider, status)"
            " VALUES (:id, :t, :amount, :currency, :provider, 'initiated')",
            {
                "id": payment_id,
                "t": tenant_id,
                "amount": amount,
                "currency": currency,
                "provider": provider,
            },
        )

    async def set_provider_ref(self, payment_id: uuid.UUID, ref: str) -> None:
        await self.uow.execute(
            "UPDATE payments SET provider_ref = :ref WHERE id = :id AND provider_ref IS NULL",
            {"ref": ref, "id": payment_id},
        )

    async def first_delivery(
        self, provider: str, event_id: str, payment_id: uuid.UUID, type: str
    ) -> bool:
        """Record a webhook delivery; False when this provider event was seen before."""
        result = await self.uow.execute(
            "INSERT INTO provider_events (provider, event_id, payment_id, type)"
            " VALUES (:p, :e, :pid, :type) ON CONFLICT DO NOTHING",
            {"p": provider, "e": event_id, "pid": payment_id, "type": type},
        )
        return result.rowcount > 0

    async def move(
        self,
        payment_id: uuid.UUID,
        status: PaymentStatus,
        *,
        reason: str | None = None,
        provider_ref: str | None = None,
    ) -> None:
        # a payment settled after a failed attempt (another card) has no failure left: the
        # attempt's reason stays in its billing.payment.failed event
        await self.uow.execute(
            "UPDATE payments SET status = :s, failure_reason = CASE WHEN :s = 'settled' THEN NULL"
            " ELSE coalesce(:r, failure_reason) END,"
            " provider_ref = coalesce(provider_ref, :ref), updated_at = now() WHERE id = :id",
            {"s": status.value, "r": reason, "ref": provider_ref, "id": payment_id},
        )

    async def set_settlement(self, payment_id: uuid.UUID, transfer_id: uuid.UUID) -> None:
        await self.uow.execute(
            "UPDATE payments SET settlement_transfer_id = :t WHERE id = :id",
            {"t": transfer_id, "id": payment_id},
        )

    async def reserve_refund(self, payment_id: uuid.UUID, amount: int) -> None:
        await self._refund_amounts(payment_id, reserved=amount)

    async def release_refund(self, payment_id: uuid.UUID, amount: int) -> None:
        await self._refund_amounts(payment_id, reserved=-amount)

    async def refunded(self, payment_id: uuid.UUID, amount: int, status: PaymentStatus) -> None:
        """A refund of `amount` succeeded: it moves from reserved to refunded."""
        await self.uow.execute(
            "UPDATE payments SET refunded_micros = refunded_micros + :amount, status = :status,"
            " refund_reserved_micros = refund_reserved_micros - :amount, updated_at = now()"
            " WHERE id = :id",
            {"status": status.value, "amount": amount, "id": payment_id},
        )

    async def _refund_amounts(self, payment_id: uuid.UUID, *, reserved: int) -> None:
        await self.uow.execute(
            "UPDATE payments SET refund_reserved_micros = refund_reserved_micros + :amount,"
            " updated_at = now() WHERE id = :id",
            {"amount": reserved, "id": payment_id},
        )

    async def settlements(
        self, provider: str, since: dt.datetime, until: dt.datetime, reported: list[uuid.UUID]
    ) -> list[Any]:
        """The ledger's settlements of this provider in the window, plus the ones the report
        names wherever they fall (a settlement booked just outside the window is no
        mismatch)."""
        return await self.uow.fetch_all(
            "SELECT p.id AS payment_id, p.provider_ref, t.amount_micros FROM payments p"
            " JOIN transfers t ON t.id = p.settlement_transfer_id"
            " WHERE p.provider = :provider AND ((t.posted_at >= :since AND t.posted_at < :until)"
            " OR p.id = ANY(CAST(:reported AS uuid[])))",
            {
                "provider": provider,
                "since": since,
                "until": until,
                "reported": [str(p) for p in reported],
            },
        )


class RefundRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def of_tenant(self, tenant_id: uuid.UUID, refund_id: uuid.UUID) -> Any:
        return await self.uow.fetch_one(
            "SELECT * FROM refunds WHERE id = :id AND tenant_id = :t",
            {"id": refund_id, "t": tenant_id},
        )

    async def get(self, refund_id: uuid.UUID, *, lock: bool = False) -> Any:
        return await self.uow.fetch_one(
            "SELECT * FROM refunds WHERE id = :id" + (" FOR UPDATE" if lock else ""),  # noqa: S608
            {"id": refund_id},
        )

    async def to_ask(self, refund_id: uuid.UUID) -> Any:
        """What the provider is asked: the refund's state and amount, the payment's ref."""
        return await self.uow.fetch_one(
            "SELECT r.status, r.amount_micros, r.currency, p.provider_ref FROM refunds r"
            " JOIN payments p ON p.id = r.payment_id WHERE r.id = :id",
            {"id": refund_id},
        )

    async def add(
        self,
        refund_id: uuid.UUID,
        payment_id: uuid.UUID,
        tenant_id: uuid.UUID,
        amount: int,
        currency: str,
        debit_transfer_id: uuid.UUID,
    ) -> None:
        await self.uow.execute(
            "INSERT INTO refunds (id, payment_id, tenant_id, amount_micros, currency, status,"
            " debit_transfer_id) VALUES (:id, :p, :t, :amount, :currency, 'requested', :debit)",
            {
                "id": refund_id,
                "p": payment_id,
                "t": tenant_id,
                "amount": amount,
                "currency": currency,
                "debit": debit_transfer_id,
            },
        )

    async def move(
        self,
        refund_id: uuid.UUID,
        status: RefundStatus,
        *,
        provider_ref: str | None = None,
        reason: str | None = None,
    ) -> None:
        await self.uow.execute(
            "UPDATE refunds SET status = :s, provider_ref = coalesce(:ref, provider_ref),"
            " failure_reason = coalesce(:r, failure_reason), updated_at = now() WHERE id = :id",
            {"s": status.value, "ref": provider_ref, "r": reason, "id": refund_id},
        )


class ReconciliationRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def add_run(
        self,
        run_id: uuid.UUID,
        provider: str,
        since: dt.datetime,
        until: dt.datetime,
        checked: int,
        mismatches: int,
    ) -> None:
        await self.uow.execute(
            "INSERT INTO reconciliation_runs (id, provider, since, until, checked, mismatches)"
            " VALUES (:id, :provider, :since, :until, :checked, :n)",
            {
                "id": run_id,
                "provider": provider,
                "since": since,
                "until": until,
                "checked": checked,
                "n": mismatches,
            },
        )

    async def add_mismatch(
        self, mismatch_id: uuid.UUID, run_id: uuid.UUID, provider: str, m: Any
    ) -> bool:
        """Record a disagreement once per (kind, payment); False when already recorded."""
        inserted = await self.uow.execute(
            "INSERT INTO reconciliation_mismatches (id, run_id, kind, payment_id, provider,"
            " provider_ref, provider_amount_micros, ledger_amount_micros) VALUES (:id, :run,"
            " :kind, :pid, :provider, :ref, :pa, :la)"
            " ON CONFLICT (kind, payment_id) DO NOTHING",
            {
                "id": mismatch_id,
                "run": run_id,
                "kind": m.kind,
                "pid": m.payment_id,
                "provider": provider,
                "ref": m.provider_ref,
                "pa": m.provider_amount_micros,
                "la": m.ledger_amount_micros,
            },
        )
        return inserted.rowcount > 0

    async def ran_since(self, provider: str, after: dt.datetime) -> bool:
        row = await self.uow.fetch_one(
            "SELECT 1 AS seen FROM reconciliation_runs WHERE provider = :p AND ran_at > :after"
            " LIMIT 1",
            {"p": provider, "after": after},
        )
        return row is not None

    async def runs(self, limit: int) -> list[Any]:
        return await self.uow.fetch_all(
            "SELECT id, provider, since, until, checked, mismatches, ran_at"
            " FROM reconciliation_runs ORDER BY ran_at DESC LIMIT :limit",
            {"limit": limit},
        )

    async def mismatches(self, limit: int) -> list[Any]:
        return await self.uow.fetch_all(
            "SELECT id, run_id, kind, payment_id, provider, provider_ref,"
            " provider_amount_micros, ledger_amount_micros, detected_at"
            " FROM reconciliation_mismatches ORDER BY detected_at DESC LIMIT :limit",
            {"limit": limit},
        )
