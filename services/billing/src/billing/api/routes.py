"""billing's HTTP routes. Tenant reads need the tenant's owner, admin or billing role (or
the operator); movements that create money (top-ups, grants), corrections, the price book
and ledger verification are operator-only until payments land (a tenant tops up through a
payment, never by crediting its own wallet)."""

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from billing.api.access import authorize
from billing.api.payments import ROUTES as PAYMENT_ROUTES
from billing.api.schemas import (
    AccountDifferenceOut,
    BalanceOut,
    CurrencyTotalOut,
    GrantCreate,
    GrantCreated,
    GrantOut,
    LedgerPage,
    PriceCreate,
    PriceOut,
    ProjectUsage,
    ReversalOut,
    TopUpCreate,
    TransferOut,
    UsageReport,
    VerificationOut,
)
from billing.app.funds import (
    AddPrice,
    Grant,
    GrantCredit,
    ReverseTransaction,
    TopUp,
    record,
)
from billing.app.queries import get_balance, list_entries, list_prices, usage_report
from billing.app.rerating import list_parked, rerate_parked
from billing.app.statements import monthly_statement, statement_csv
from billing.app.verify import verify_ledger
from billing.domain.access import Action
from billing.domain.ledger import Transfer
from billing.domain.pricing import PriceVersion
from billing.settings import BillingSettings
from platformkit.auth import Principal
from platformkit.db import Database
from platformkit.http import json_reply, respond
from platformkit.idempotency import StoredResponse, check_key

IdempotencyKey = Annotated[str | None, Parameter(header="Idempotency-Key")]


def _transfer_out(t: Transfer | Any) -> TransferOut:
    if isinstance(t, Transfer):
        return TransferOut(
            id=t.id,
            transaction_id=t.transaction_id,
            kind=t.kind.value,
            debit_account_id=t.debit_account_id,
            credit_account_id=t.credit_account_id,
            amount_micros=t.amount_micros,
            currency=t.currency,
            occurred_at=t.occurred_at,
            leg=t.leg,
            reverses=t.reverses,
        )
    return TransferOut(**{f: t[f] for f in TransferOut.__struct_fields__})


class BillingController(Controller):
    path = "/v1/billing"
    tags = ["billing"]

    @get("/tenants/{tenant_id:uuid}/balance", operation_id="getBalance")
    async def balance(self, tenant_id: uuid.UUID, db: Database, principal: Principal) -> BalanceOut:
        authorize(principal, Action.BILLING_READ, tenant_id)
        b = await get_balance(db, tenant_id)
        return BalanceOut(
            tenant_id=tenant_id,
            currency=b.tenant["currency"],
            available_micros=b.available_micros,
            wallet_micros=b.wallet.balance,
            standing=b.tenant["standing"],
            low_threshold_micros=b.tenant["low_threshold_micros"],
            ledger_sequence=b.tenant["ledger_sequence"],
            grants=[
                GrantOut(g.id, g.credits_posted, g.balance, g.priority, g.expires_at)
                for g in b.grants
            ],
        )

    @get("/tenants/{tenant_id:uuid}/ledger", operation_id="listLedgerEntries")
    async def ledger(
        self,
        tenant_id: uuid.UUID,
        db: Database,
        principal: Principal,
        after: Annotated[int, Parameter(ge=0)] = 0,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    ) -> LedgerPage:
        authorize(principal, Action.BILLING_READ, tenant_id)
        rows = await list_entries(db, tenant_id, after, limit)
        return LedgerPage(
            items=[_transfer_out(r) for r in rows],
            next_after=rows[-1]["seq"] if len(rows) == limit else None,
        )

    @get("/tenants/{tenant_id:uuid}/usage", operation_id="getUsageByProject")
    async def usage(
        self,
        tenant_id: uuid.UUID,
        db: Database,
        principal: Principal,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> UsageReport:
        authorize(principal, Action.BILLING_READ, tenant_id)
        since, until, rows = await usage_report(db, tenant_id, since, until)
        items = [
            ProjectUsage(
                project_id=r["project_id"],
                price_key=r["price_key"],
                intervals=r["intervals"],
                gpu_seconds=r["gpu_seconds"],
                charged_micros=r["charged_micros"],
                reversed_micros=r["reversed_micros"],
                net_micros=r["charged_micros"] - r["reversed_micros"],
            )
            for r in rows
            # a project-bound caller (service account) sees its own projects only
            if principal.project_ids is None or r["project_id"] in principal.project_ids
        ]
        return UsageReport(tenant_id, since, until, items)

    @post(
        "/tenants/{tenant_id:uuid}/top-ups",
        operation_id="createTopUp",
        status_code=201,
        responses={
            201: ResponseSpec(TransferOut, description="The top-up", generate_examples=False)
        },
    )
    async def create_top_up(
        self,
        tenant_id: uuid.UUID,
        data: TopUpCreate,
        db: Database,
        principal: Principal,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[bytes]:
        principal.require_operator()
        command = TopUp(tenant_id, data.amount_micros, data.reference, check_key(idempotency_key))
        reply = await record(db, command, lambda t: json_reply(_transfer_out(t)))
        return respond(reply)

    @post(
        "/tenants/{tenant_id:uuid}/grants",
        operation_id="createGrant",
        status_code=201,
        responses={
            201: ResponseSpec(GrantCreated, description="The grant", generate_examples=False)
        },
    )
    async def create_grant(
        self,
        tenant_id: uuid.UUID,
        data: GrantCreate,
        db: Database,
        principal: Principal,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[bytes]:
        principal.require_operator()
        command = GrantCredit(
            tenant_id,
            data.amount_micros,
            data.expires_at,
            data.priority,
            check_key(idempotency_key),
        )

        def encode(grant: Grant) -> StoredResponse:
            return json_reply(GrantCreated(grant.grant_id, _transfer_out(grant.transfer)))

        return respond(await record(db, command, encode))

    @post(
        "/transactions/{transaction_id:uuid}/reversal",
        operation_id="reverseTransaction",
        status_code=201,
        responses={
            201: ResponseSpec(
                ReversalOut, description="The reversing transfers", generate_examples=False
            )
        },
    )
    async def reverse(
        self,
        transaction_id: uuid.UUID,
        db: Database,
        principal: Principal,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[bytes]:
        principal.require_operator()

        def encode(transfers: list[Transfer]) -> StoredResponse:
            return json_reply(
                ReversalOut(transfers[0].transaction_id, [_transfer_out(t) for t in transfers])
            )

        command = ReverseTransaction(transaction_id, check_key(idempotency_key))
        return respond(await record(db, command, encode))

    @post(
        "/prices",
        operation_id="createPrice",
        status_code=201,
        responses={
            201: ResponseSpec(PriceOut, description="The price version", generate_examples=False)
        },
    )
    async def create_price(
        self,
        data: PriceCreate,
        db: Database,
        principal: Principal,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[bytes]:
        principal.require_operator()
        version = PriceVersion(
            price_key=data.price_key,
            currency=data.currency,
            micros_per_gpu_hour=data.micros_per_gpu_hour,
            effective_from=data.effective_from,
            tenant_id=data.tenant_id,
            min_increment_s=data.min_increment_s,
        )

        def encode(price_id: uuid.UUID) -> StoredResponse:
            return json_reply(
                PriceOut(
                    price_id,
                    version.price_key,
                    version.currency,
                    version.micros_per_gpu_hour,
                    version.min_increment_s,
                    version.effective_from,
                    version.tenant_id,
                )
            )

        command = AddPrice(version, check_key(idempotency_key))
        return respond(await record(db, command, encode))

    @get("/prices", operation_id="listPrices")
    async def prices(
        self, db: Database, principal: Principal, tenant_id: uuid.UUID | None = None
    ) -> list[PriceOut]:
        if tenant_id is not None:
            principal.require_tenant(tenant_id)
        elif not principal.is_operator:
            tenant_id = principal.tenant_id
        rows = await list_prices(db, tenant_id)
        return [
            PriceOut(
                r["id"],
                r["price_key"],
                r["currency"],
                r["micros_per_gpu_hour"],
                r["min_increment_s"],
                r["effective_from"],
                r["tenant_id"],
            )
            for r in rows
            if principal.is_operator or r["tenant_id"] in (None, tenant_id)
        ]

    @get(
        "/tenants/{tenant_id:uuid}/statements/{month:str}",
        operation_id="getMonthlyStatement",
        description="JSON by default; `?format=csv` for CSV.",
    )
    async def statement(
        self,
        tenant_id: uuid.UUID,
        month: str,
        db: Database,
        principal: Principal,
        format: Annotated[str, Parameter(pattern="^(json|csv)$")] = "json",
    ) -> Response[Any]:
        authorize(principal, Action.BILLING_READ, tenant_id)
        statement = await monthly_statement(db, tenant_id, month)
        if format == "csv":
            return Response(
                statement_csv(statement),
                media_type="text/csv",
                headers={"Content-Disposition": f'attachment; filename="statement-{month}.csv"'},
            )
        return Response(msgspec.json.encode(statement), media_type="application/json")

    @get("/ledger/verify", operation_id="verifyLedger")
    async def verify(self, db: Database, principal: Principal) -> VerificationOut:
        principal.require_operator()
        report = await verify_ledger(db)
        return VerificationOut(
            ok=report.ok,
            transfers=report.transfers,
            differences=[AccountDifferenceOut(**d.__dict__) for d in report.differences],
            currencies=[CurrencyTotalOut(**c.__dict__) for c in report.currencies],
        )


class UnratedUsageOut(msgspec.Struct):
    interval_id: uuid.UUID
    tenant_id: uuid.UUID
    price_key: str
    started_at: dt.datetime
    reason: str
    received_at: dt.datetime
    rated_at: dt.datetime | None = None


class RerateOut(msgspec.Struct):
    rated: int
    still_unrated: int


class UnratedUsageController(Controller):
    """Parked usage (no price in effect when it arrived), for the operator."""

    path = "/v1/billing/unrated"
    tags = ["billing"]

    @get("/", operation_id="listUnratedUsage")
    async def parked(
        self,
        db: Database,
        principal: Principal,
        tenant_id: uuid.UUID | None = None,
        include_rated: bool = False,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    ) -> list[UnratedUsageOut]:
        principal.require_operator()
        rows = await list_parked(db, tenant_id, include_rated, limit)
        return [
            UnratedUsageOut(**{f: r[f] for f in UnratedUsageOut.__struct_fields__}) for r in rows
        ]

    @post("/rerate", operation_id="rerateUnratedUsage", status_code=200)
    async def rerate(self, db: Database, principal: Principal) -> RerateOut:
        """Re-rate now what a price covers (the schedule does it every
        GPUCLOUD_BILLING_RERATE_INTERVAL_S); idempotent: a rated interval is not charged twice."""
        principal.require_operator()
        result = await rerate_parked(db, BillingSettings.from_env())
        return RerateOut(result.rated, result.still_unrated)


ROUTES = [BillingController, UnratedUsageController, *PAYMENT_ROUTES]
