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
    # Python's generation-0 GC threshold while the rating consumer runs (0: Python's default,
    # 700). Rating allocates tens of thousands of short-lived objects per batch; at the
    # default threshold the cyclic collector took ~40% of the rating CPU (bench/rating.py).
    gc_gen0_threshold: int = 50_000
    # How often parked usage (no price when it arrived) is re-rated where a price now covers
    # it (seconds; 0 disables the job; POST /v1/billing/unrated/rerate runs it at once).
    rerate_interval_s: float = 30.0
    # How often expired promotional grants are swept (seconds; 0 disables the sweeper).
    grant_expiry_interval_s: float = 60.0
    # How often tenants whose balance moved get a billing.balance.changed (seconds).
    announce_interval_s: float = 2.0
    # Scheduled reconciliation: how often (seconds; 0 disables), how far back each run looks
    # and how long before now its window ends (webhooks of just-settled payments in flight).
    reconcile_interval_s: float = 3600.0
    reconcile_lookback_s: float = 172_800.0
    reconcile_grace_s: float = 900.0
    # HMAC secret of the sandbox payment provider's webhooks (random per process if unset).
    sandbox_secret: str | None = dataclasses.field(default=None, repr=False)
    # Which payment provider takes top-ups: `stripe`, or `sandbox` (settles every top-up
    # without money: only with sandbox_payments). No default: billing refuses to start
    # until one is chosen, so no install mints money by accident.
    payment_provider: str = ""
    sandbox_payments: bool = False
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
            gc_gen0_threshold=int(env("GPUCLOUD_BILLING_GC_GEN0_THRESHOLD", "50000")),
            rerate_interval_s=float(env("GPUCLOUD_BILLING_RERATE_INTERVAL_S", "30")),
            grant_expiry_interval_s=float(env("GPUCLOUD_BILLING_GRANT_EXPIRY_INTERVAL_S", "60")),
            announce_interval_s=float(env("GPUCLOUD_BILLING_ANNOUNCE_INTERVAL_S", "2")),
            reconcile_interval_s=float(env("GPUCLOUD_BILLING_RECONCILE_INTERVAL_S", "3600")),
            reconcile_lookback_s=float(env("GPUCLOUD_BILLING_RECONCILE_LOOKBACK_S", "172800")),
            reconcile_grace_s=float(env("GPUCLOUD_BILLING_RECONCILE_GRACE_S", "900")),
            sandbox_secret=env("GPUCLOUD_BILLING_SANDBOX_SECRET"),
            payment_provider=env("GPUCLOUD_BILLING_PAYMENT_PROVIDER", ""),
            sandbox_payments=env("GPUCLOUD_BILLING_SANDBOX_PAYMENTS", "") == "true",
            stripe_api_key=env("GPUCLOUD_BILLING_STRIPE_API_KEY"),
            stripe_webhook_secret=env("GPUCLOUD_BILLING_STRIPE_WEBHOOK_SECRET"),
            stripe_api_base=env("GPUCLOUD_BILLING_STRIPE_API_BASE"),
        )
