"""Wires billing together: routes, migrations, the tenant projection, the rating consumer,
the balance announcer, the grant-expiry sweeper, the re-rating of parked usage, the price
announcements, the payment provider and the reconciliation schedule."""

import asyncio
import contextlib
import gc
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from litestar import Litestar

from billing import __version__
from billing.api.routes import ROUTES
from billing.app.balances import announce_moved_balances
from billing.app.funds import expire_grants
from billing.app.prices import announce_pending_prices
from billing.app.rating import USAGE_TOPIC, UsageRater
from billing.app.reconciliation import Schedule, scheduled_reconciliation
from billing.app.rerating import rerate_parked
from billing.app.tenants import TENANT_TOPIC, tenant_projection
from billing.providers.base import PaymentProvider
from billing.providers.sandbox import SandboxProvider
from billing.providers.stripe import StripeProvider
from billing.settings import BillingSettings
from platformkit.batch_consumers import BatchConsumer, BatchSubscription
from platformkit.consumers import Subscription
from platformkit.http import ServiceDefinition, build_service_app

log = logging.getLogger(__name__)
SETTINGS = BillingSettings.from_env()


async def start_rating(app: Litestar) -> None:
    """The rating consumer is a batch consumer (platformkit.batch_consumers), which the
    kit's runtime does not start: it starts here and stops with the app."""
    runtime = app.state.runtime
    if runtime.db is not None:
        # The seeded list price book (and any version a crash left unannounced).
        await announce_pending_prices(runtime.db)
    if not runtime.kafka or runtime.db is None:
        return
    tune_gc(SETTINGS.gc_gen0_threshold)
    rater = UsageRater(SETTINGS)
    consumer = BatchConsumer(
        BatchSubscription("rating", (USAGE_TOPIC,), rater, max_records=SETTINGS.rating_batch_size),
        service=runtime.settings.service_name,
        db=runtime.db,
        producer=runtime.producer,
        kafka=runtime.settings.kafka,
        max_attempts=runtime.settings.consumer_max_attempts,
    )
    await consumer.start()
    app.state.rating = consumer
    app.state.metrics.lag_readers.append(consumer.lag_by_partition)  # GET /metrics
    app.state.rater = rater
    db = runtime.db
    tasks = [
        asyncio.create_task(
            _every(SETTINGS.announce_interval_s, lambda: announce_moved_balances(db)),
            name="balance-announcer",
        ),
        asyncio.create_task(
            _every(SETTINGS.grant_expiry_interval_s, lambda: expire_grants(db)),
            name="grant-expiry",
        ),
        asyncio.create_task(
            _every(SETTINGS.rerate_interval_s, lambda: rerate_parked(db, SETTINGS)),
            name="re-rating",
        ),
    ]

    async def stop_rating(_: Any = None) -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await consumer.stop()

    # Stop before the runtime disposes of the database (shutdown hooks run in order).
    app.on_shutdown.insert(0, stop_rating)


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


async def _every(interval_s: float, job: Callable[[], Awaitable[Any]]) -> None:
    if interval_s <= 0:
        return
    while True:
        await asyncio.sleep(interval_s)
        try:
            await job()
        except Exception as exc:
            log.warning("periodic job failed", extra={"fields": {"error": repr(exc)}})


def payment_provider(billing: BillingSettings, deliver_to: str) -> PaymentProvider:
    """The provider GPUCLOUD_BILLING_PAYMENT_PROVIDER names; the sandbox's webhooks go to
    `deliver_to` (this very service) over HTTP."""
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
    if billing.payment_provider != "sandbox":
        raise RuntimeError(f"unknown payment provider {billing.payment_provider!r}")

    async def deliver(body: bytes, headers: dict[str, str]) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            await client.post(deliver_to, content=body, headers=headers)

    secret = (billing.sandbox_secret or secrets.token_hex(32)).encode()
    return SandboxProvider(secret=secret, deliver=deliver)


def start_payments(app: Litestar) -> None:
    settings = app.state.settings
    url = f"http://127.0.0.1:{settings.http_port}/v1/billing/webhooks/sandbox"
    app.state.payment_provider = payment_provider(SETTINGS, url)


def start_reconciliation(app: Litestar, billing: BillingSettings | None = None) -> None:
    """Reconcile with the provider every `reconcile_interval_s` (0: never). The provider is
    read from the app's state at each run (tests swap it)."""
    billing = billing or SETTINGS
    db = app.state.runtime.db
    if db is None or billing.reconcile_interval_s <= 0:
        return
    schedule = Schedule(
        billing.reconcile_interval_s, billing.reconcile_lookback_s, billing.reconcile_grace_s
    )
    task = asyncio.create_task(
        _every(
            schedule.interval_s,
            lambda: scheduled_reconciliation(db, app.state.payment_provider, schedule),
        ),
        name="reconciliation",
    )

    async def stop(_: Any = None) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.on_shutdown.insert(0, stop)


DEFINITION = ServiceDefinition(
    name="billing",
    version=__version__,
    description="Billing, metering, payments: price book, ledger, balances, statements.",
    route_handlers=ROUTES,
    migrations="billing.store.migrations",
    subscriptions=[Subscription("tenants", (TENANT_TOPIC,), tenant_projection(SETTINGS))],
    on_startup=[start_rating, start_payments, start_reconciliation],
)


def build_app() -> Litestar:
    return build_service_app(DEFINITION)
