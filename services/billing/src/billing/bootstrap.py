"""Wires billing together: routes, migrations, the tenant projection, the rating consumer
(a batch subscription), the jobs (balance announcer, grant expiry, re-rating of parked
usage, scheduled reconciliation), the price announcements and the payment provider."""

import gc
import logging
import secrets

import httpx
from litestar import Litestar

from billing import SERVICE, __version__
from billing.api.routes import ROUTES
from billing.app.balances import announce_moved_balances
from billing.app.funds import expire_grants
from billing.app.prices import announce_pending_prices
from billing.app.rating import UsageRater
from billing.app.reconciliation import Schedule, scheduled_reconciliation
from billing.app.rerating import rerate_parked
from billing.app.tenants import tenant_projection
from billing.providers.base import PaymentProvider
from billing.providers.sandbox import SandboxProvider
from billing.providers.stripe import StripeProvider
from billing.settings import BillingSettings
from gpucloud_contracts.catalog import Topic
from platformkit.consumers import BatchSubscription, Subscription
from platformkit.definition import ServiceDefinition
from platformkit.http import build_service_app
from platformkit.jobs import Job
from platformkit.runtime import ServiceRuntime
from platformkit.settings import TOKEN_SETTINGS

log = logging.getLogger(__name__)
SETTINGS = BillingSettings.from_env()


def tune_gc(gen0_threshold: int) -> None:
    """Fewer cyclic-GC passes for the rating hot path. Rating frees nearly everything it
    allocates by reference counting (no cycles), so collecting generation 0 every 700
    allocations only walks live batch objects again and again: ~40% of the rating CPU on
    the bench. The objects alive after start-up (modules, app, settings) are frozen out of
    the collector's generations so the rarer full passes do not walk them either."""
    if gen0_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


def payment_provider(billing: BillingSettings, deliver_to: str) -> PaymentProvider:
    """The provider GPUCLOUD_BILLING_PAYMENT_PROVIDER names, which must be given: stripe
    with its keys, or the sandbox (money from nothing) only with
    GPUCLOUD_BILLING_SANDBOX_PAYMENTS=true. The sandbox's webhooks go to `deliver_to` (this
    very service) over HTTP."""
    if billing.payment_provider == "stripe":
        if not billing.stripe_api_key or not billing.stripe_webhook_secret:
            raise RuntimeError(
                "GPUCLOUD_BILLING_STRIPE_API_KEY and GPUCLOUD_BILLING_STRIPE_WEBHOOK_SECRET"
                " are required with GPUCLOUD_BILLING_PAYMENT_PROVIDER=stripe"
            )
        return StripeProvider(
            api_key=billing.stripe_api_key,
            webhook_secret=billing.stripe_webhook_secret,
            api_base=billing.stripe_api_base,
        )
    if not billing.payment_provider:
        raise RuntimeError(
            "GPUCLOUD_BILLING_PAYMENT_PROVIDER is not set: choose stripe (with"
            " GPUCLOUD_BILLING_STRIPE_API_KEY and GPUCLOUD_BILLING_STRIPE_WEBHOOK_SECRET) or"
            " sandbox (no money; with GPUCLOUD_BILLING_SANDBOX_PAYMENTS=true)"
        )
    if billing.payment_provider != "sandbox":
        raise RuntimeError(f"unknown payment provider {billing.payment_provider!r}")
    if not billing.sandbox_payments:
        raise RuntimeError(
            "GPUCLOUD_BILLING_PAYMENT_PROVIDER=sandbox settles every top-up without money:"
            " set GPUCLOUD_BILLING_SANDBOX_PAYMENTS=true to mean it (development and demos only)"
        )

    async def deliver(body: bytes, headers: dict[str, str]) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            await client.post(deliver_to, content=body, headers=headers)

    secret = (billing.sandbox_secret or secrets.token_hex(32)).encode()
    return SandboxProvider(secret=secret, deliver=deliver)


async def start_billing(app: Litestar) -> None:
    """The payment provider (read from the app's state by the routes and the reconciliation
    job: tests swap it), the seeded list price book (and any version a crash left
    unannounced), and the rating hot path's GC tuning."""
    settings = app.state.settings
    url = f"http://127.0.0.1:{settings.http_port}/v1/billing/webhooks/sandbox"
    # a test app chooses its provider in `billing_settings`; a service from its environment
    chosen = getattr(app.state, "billing_settings", None) or SETTINGS
    app.state.payment_provider = payment_provider(chosen, url)  # refuses to start unchosen
    runtime: ServiceRuntime = app.state.runtime
    if runtime.db is not None:
        await announce_pending_prices(runtime.db)
    if runtime.consumers:
        tune_gc(SETTINGS.gc_gen0_threshold)


def jobs(billing: BillingSettings) -> list[Job]:
    """billing's periodic jobs (an interval of 0 disables one)."""
    schedule = Schedule(
        billing.reconcile_interval_s, billing.reconcile_lookback_s, billing.reconcile_grace_s
    )
    return [
        Job(
            "balance-announcer",
            billing.announce_interval_s,
            lambda rt: announce_moved_balances(rt.database),
        ),
        Job("grant-expiry", billing.grant_expiry_interval_s, lambda rt: expire_grants(rt.database)),
        Job("re-rating", billing.rerate_interval_s, lambda rt: rerate_parked(rt.database, billing)),
        Job(
            "reconciliation",
            schedule.interval_s,
            lambda rt: scheduled_reconciliation(rt.database, rt.state.payment_provider, schedule),
        ),
    ]


DEFINITION = ServiceDefinition(
    name=SERVICE,
    version=__version__,
    # production takes payments through Stripe (docs/billing.md, "Payment providers")
    required_settings=(
        *TOKEN_SETTINGS,
        "GPUCLOUD_BILLING_PAYMENT_PROVIDER",
        "GPUCLOUD_BILLING_STRIPE_API_KEY",
        "GPUCLOUD_BILLING_STRIPE_WEBHOOK_SECRET",
    ),
    description="Billing, metering, payments: price book, ledger, balances, statements.",
    route_handlers=ROUTES,
    migrations="billing.store.migrations",
    subscriptions=[
        Subscription("tenants", (Topic.IAM_TENANT_V1,), tenant_projection(SETTINGS)),
    ],
    batch_subscriptions=[
        BatchSubscription(
            "rating",
            (Topic.METERING_USAGE_V1,),
            UsageRater(SETTINGS),
            max_records=SETTINGS.rating_batch_size,
        ),
    ],
    jobs=jobs(SETTINGS),
    on_startup=[start_billing],
)


def build_app() -> Litestar:
    return build_service_app(DEFINITION)
