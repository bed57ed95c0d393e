"""Wires billing together: routes, migrations, the tenant projection, the rating consumer,
the balance announcer, the grant-expiry sweeper and the payment provider."""

import asyncio
import contextlib
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
from billing.app.rating import USAGE_TOPIC, UsageRater
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
    if not runtime.kafka or runtime.db is None:
        return
    rater = UsageRater(SETTINGS)
    consumer = BatchConsumer(
        BatchSubscription("rating", (USAGE_TOPIC,), rater, max_records=SETTINGS.rating_batch_size),
        service=runtime.settings.service_name,
        db=runtime.db,
        producer=runtime.producer,
        bootstrap=runtime.settings.kafka_bootstrap,
        max_attempts=runtime.settings.consumer_max_attempts,
    )
    await consumer.start()
    app.state.rating = consumer
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
    ]

    async def stop_rating(_: Any = None) -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await consumer.stop()

    # Stop before the runtime disposes of the database (shutdown hooks run in order).
    app.on_shutdown.insert(0, stop_rating)


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


DEFINITION = ServiceDefinition(
    name="billing",
    version=__version__,
    description="Billing, metering, payments: price book, ledger, balances, statements.",
    route_handlers=ROUTES,
    migrations="billing.store.migrations",
    subscriptions=[Subscription("tenants", (TENANT_TOPIC,), tenant_projection(SETTINGS))],
    on_startup=[start_rating, start_payments],
)


def build_app() -> Litestar:
    return build_service_app(DEFINITION)
