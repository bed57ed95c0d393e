"""billing's own settings (GPUCLOUD_BILLING_* variables), besides the kit's ServiceSettings."""

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class BillingSettings:
    # The currency a tenant is opened in (one billing currency per tenant).
    currency: str = "USD"
    # Below or at this available balance a tenant's standing is `low` (10.00 by default).
    low_threshold_micros: int = 10_000_000
    # Rating batch: at most this many usage records per database transaction.
    rating_batch_size: int = 4000
    # How often expired promotional grants are swept (seconds; 0 disables the sweeper).
    grant_expiry_interval_s: float = 60.0
    # How often tenants whose balance moved get a billing.balance.changed (seconds).
    announce_interval_s: float = 2.0
    # HMAC secret of the sandbox payment provider's webhooks (random per process if unset).
    sandbox_secret: str | None = dataclasses.field(default=None, repr=False)
    # Which payment provider takes top-ups: `sandbox` (local) or `stripe`.
    payment_provider: str = "sandbox"
    # Stripe: secret API key, webhook endpoint signing secret (whsec_...), and an API base
    # other than Stripe's own (stripe-mock in tests; unset in production).
    stripe_api_key: str | None = dataclasses.field(default=None, repr=False)
    stripe_webhook_secret: str | None = dataclasses.field(default=None, repr=False)
    stripe_api_base: str | None = None

    @classmethod
    def from_env(cls) -> "BillingSettings":
        env = os.environ.get
        return cls(
            currency=env("GPUCLOUD_BILLING_CURRENCY", "USD"),
            low_threshold_micros=int(env("GPUCLOUD_BILLING_LOW_THRESHOLD_MICROS", "10000000")),
            rating_batch_size=int(env("GPUCLOUD_BILLING_RATING_BATCH_SIZE", "4000")),
            grant_expiry_interval_s=float(env("GPUCLOUD_BILLING_GRANT_EXPIRY_INTERVAL_S", "60")),
            announce_interval_s=float(env("GPUCLOUD_BILLING_ANNOUNCE_INTERVAL_S", "2")),
            sandbox_secret=env("GPUCLOUD_BILLING_SANDBOX_SECRET"),
            payment_provider=env("GPUCLOUD_BILLING_PAYMENT_PROVIDER", "sandbox"),
            stripe_api_key=env("GPUCLOUD_BILLING_STRIPE_API_KEY"),
            stripe_webhook_secret=env("GPUCLOUD_BILLING_STRIPE_WEBHOOK_SECRET"),
            stripe_api_base=env("GPUCLOUD_BILLING_STRIPE_API_BASE"),
        )
