"""Payment routes: a tenant's owners and billing people (`billing.manage`) start a top-up
or a refund, its owners, admins and billing people (`billing.read`) read them
(domain/access.py); the provider's webhooks (public, authenticated by their signature)
settle or fail it."""

import dataclasses
import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import Parameter

from billing.api.access import authorize
from billing.app.payments import InitiatePayment, apply_webhook, get_payment, initiate_payment
from billing.app.reconciliation import list_mismatches, list_runs, reconcile
from billing.app.refunds import RequestRefund, get_refund, refund_payment
from billing.domain.access import Action
from billing.providers.base import InvalidSignature, PaymentProvider
from platformkit.auth import Principal
from platformkit.db import Database
from platformkit.errors import BadRequest, NotFound, ValidationFailed
from platformkit.idempotency import check_key


class PaymentCreate(msgspec.Struct, forbid_unknown_fields=True):
    amount_micros: Annotated[int, msgspec.Meta(ge=1, le=10**13)]


class PaymentOut(msgspec.Struct):
    id: uuid.UUID
    tenant_id: uuid.UUID
    amount_micros: int
    currency: str
    provider: str
    status: str
    provider_ref: str | None = None
    failure_reason: str | None = None


class PaymentCreated(PaymentOut):
    """The answer to the caller who created the top-up (or repeats its Idempotency-Key):
    the payment and, for Stripe, the PaymentIntent's client_secret, which Stripe.js confirms
    the payment with (docs/billing.md, "Confirming a Stripe top-up"). No read returns it."""

    client_secret: str | None = None


class RefundCreate(msgspec.Struct, forbid_unknown_fields=True):
    # None: everything still refundable
    amount_micros: Annotated[int, msgspec.Meta(ge=1, le=10**13)] | None = None


class RefundOut(msgspec.Struct):
    id: uuid.UUID
    payment_id: uuid.UUID
    tenant_id: uuid.UUID
    amount_micros: int
    currency: str
    status: str
    provider_ref: str | None = None
    failure_reason: str | None = None


def _out(row: Any) -> PaymentOut:
    return PaymentOut(**{f: row[f] for f in PaymentOut.__struct_fields__})


def _refund_out(row: Any) -> RefundOut:
    fields = {f: row[f] for f in RefundOut.__struct_fields__}
    return RefundOut(**{**fields, "currency": row["currency"].strip()})


def _provider(state: State) -> PaymentProvider:
    return state.payment_provider


class PaymentController(Controller):
    path = "/v1/billing"
    tags = ["payments"]

    @post("/tenants/{tenant_id:uuid}/payments", operation_id="createPayment", status_code=201)
    async def create(
        self,
        tenant_id: uuid.UUID,
        data: PaymentCreate,
        db: Database,
        principal: Principal,
        state: State,
        idempotency_key: Annotated[str | None, Parameter(header="Idempotency-Key")] = None,
    ) -> PaymentCreated:
        authorize(principal, Action.BILLING_MANAGE, tenant_id)
        key = check_key(idempotency_key)
        if key is None:
            raise ValidationFailed.for_field("Idempotency-Key", "is required to pay")
        initiated = await initiate_payment(
            db, _provider(state), InitiatePayment(tenant_id, data.amount_micros, key)
        )
        payment = await get_payment(db, tenant_id, initiated.payment_id)
        fields = {f: payment[f] for f in PaymentOut.__struct_fields__}
        return PaymentCreated(**fields, client_secret=initiated.client_secret)

    @get("/tenants/{tenant_id:uuid}/payments/{payment_id:uuid}", operation_id="getPayment")
    async def retrieve(
        self, tenant_id: uuid.UUID, payment_id: uuid.UUID, db: Database, principal: Principal
    ) -> PaymentOut:
        authorize(principal, Action.BILLING_READ, tenant_id)
        return _out(await get_payment(db, tenant_id, payment_id))

    @post(
        "/tenants/{tenant_id:uuid}/payments/{payment_id:uuid}/refunds",
        operation_id="refundPayment",
        status_code=201,
    )
    async def refund(
        self,
        tenant_id: uuid.UUID,
        payment_id: uuid.UUID,
        data: RefundCreate,
        db: Database,
        principal: Principal,
        state: State,
        idempotency_key: Annotated[str | None, Parameter(header="Idempotency-Key")] = None,
    ) -> RefundOut:
        """Refund a settled top-up, whole (no amount) or in part; the same people who top up
        (`billing.manage`; top-ups take no step-up either)."""
        authorize(principal, Action.BILLING_MANAGE, tenant_id)
        key = check_key(idempotency_key)
        if key is None:
            raise ValidationFailed.for_field("Idempotency-Key", "is required to refund")
        refund_id = await refund_payment(
            db,
            _provider(state),
            RequestRefund(tenant_id, payment_id, data.amount_micros, key),
        )
        return _refund_out(await get_refund(db, tenant_id, refund_id))

    @get("/tenants/{tenant_id:uuid}/refunds/{refund_id:uuid}", operation_id="getRefund")
    async def retrieve_refund(
        self, tenant_id: uuid.UUID, refund_id: uuid.UUID, db: Database, principal: Principal
    ) -> RefundOut:
        authorize(principal, Action.BILLING_READ, tenant_id)
        return _refund_out(await get_refund(db, tenant_id, refund_id))

    @post("/webhooks/sandbox", operation_id="sandboxWebhook", status_code=200)
    async def webhook(self, request: Request[Any, Any, Any], db: Database, state: State) -> dict:
        return await _webhook("sandbox", request, db, state)

    @post("/webhooks/stripe", operation_id="stripeWebhook", status_code=200)
    async def stripe_webhook(
        self, request: Request[Any, Any, Any], db: Database, state: State
    ) -> dict:
        return await _webhook("stripe", request, db, state)


async def _webhook(name: str, request: Request[Any, Any, Any], db: Database, state: State) -> dict:
    """Public: the provider's signature is the authentication. Only the configured provider's
    route takes deliveries, so one provider's events never reach another's verifier."""
    provider = _provider(state)
    if provider.name != name:
        raise NotFound(f"the {name} payment provider is not configured")
    body = await request.body()
    try:
        outcome = await apply_webhook(db, provider, body, dict(request.headers))
    except InvalidSignature as exc:
        raise BadRequest(f"webhook refused: {exc}") from None
    return {"result": outcome}


class ReconciliationRun(msgspec.Struct, forbid_unknown_fields=True):
    since: dt.datetime
    until: dt.datetime


class MismatchOut(msgspec.Struct):
    kind: str
    payment_id: uuid.UUID
    provider_ref: str | None
    provider_amount_micros: int | None
    ledger_amount_micros: int | None


class RunOut(msgspec.Struct):
    run_id: uuid.UUID
    checked: int
    mismatches: list[MismatchOut]


class ReconciliationController(Controller):
    path = "/v1/billing/reconciliation"
    tags = ["payments"]

    @post("/runs", operation_id="runReconciliation", status_code=201)
    async def run(
        self, data: ReconciliationRun, db: Database, principal: Principal, state: State
    ) -> RunOut:
        principal.require_operator()
        result = await reconcile(db, _provider(state), data.since, data.until)
        return RunOut(
            result.run_id,
            result.checked,
            [MismatchOut(**dataclasses.asdict(m)) for m in result.mismatches],
        )

    @get("/runs", operation_id="listReconciliationRuns")
    async def runs(
        self,
        db: Database,
        principal: Principal,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 50,
    ) -> list[dict[str, Any]]:
        """Recent runs, the operator's and the schedule's, newest first."""
        principal.require_operator()
        return [dict(r) for r in await list_runs(db, limit)]

    @get("/mismatches", operation_id="listReconciliationMismatches")
    async def mismatches(
        self,
        db: Database,
        principal: Principal,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        principal.require_operator()
        return [dict(r) for r in await list_mismatches(db, limit)]


ROUTES = [PaymentController, ReconciliationController]
