"""The portal's settings, read once from the environment.

GPUCLOUD_GATEWAY_URL           where the portal calls the public API (devstack: the gateway)
GPUCLOUD_PORTAL_SESSION_KEYS   comma-separated secrets; the first seals new session cookies,
                               every one opens them (rotation: prepend a new key, drop the old
                               one after the session lifetime). Unset: a random key per
                               process, with a warning (sessions end on restart and replicas
                               disagree), like iam without its passphrase.
GPUCLOUD_PORTAL_COOKIE_SECURE  auto (default: Secure when the request came over TLS, as the
                               edge says in X-Forwarded-Proto), true, false
GPUCLOUD_PORTAL_SESSION_MAX_AGE_S  absolute session lifetime (43200 = 12 h)
GPUCLOUD_PORTAL_STRIPE_PUBLISHABLE_KEY  Stripe's publishable key (pk_..., public), set where
                               billing's provider is Stripe: the payment page then confirms
                               the PaymentIntent with Stripe.js's Payment Element (loaded
                               from https://js.stripe.com/v3, allowed by that page's CSP
                               only). Unset (devstack's sandbox): no Stripe.js anywhere.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass, field

from platformkit.settings import ServiceSettings

log = logging.getLogger(__name__)

COOKIE_SECURE_CHOICES = ("auto", "true", "false")


def _key(secret: str) -> bytes:
    """A 256-bit AES key from a configured secret of any length."""
    return hashlib.sha256(b"gpucloud-portal-session\0" + secret.encode()).digest()


# What a production portal must be given (it has no ServiceDefinition; main.py checks these
# like platformkit.service does for the others): the gateway it calls and the session key
# every replica shares.
PRODUCTION_SETTINGS = ("GPUCLOUD_GATEWAY_URL", "GPUCLOUD_PORTAL_SESSION_KEYS")


@dataclass(frozen=True)
class PortalSettings:
    service: ServiceSettings
    gateway_url: str = "http://127.0.0.1:8080"
    session_keys: tuple[bytes, ...] = field(default=(), repr=False)
    cookie_secure: str = "auto"
    session_max_age_s: int = 43_200
    ephemeral_key: bool = False
    stripe_publishable_key: str | None = None

    @classmethod
    def from_env(cls, version: str) -> PortalSettings:
        service = ServiceSettings.from_env("portal", version)
        raw = os.environ.get("GPUCLOUD_PORTAL_SESSION_KEYS", "")
        configured = [part.strip() for part in raw.split(",") if part.strip()]
        ephemeral = not configured
        if ephemeral:
            log.warning(
                "GPUCLOUD_PORTAL_SESSION_KEYS is not set: a random key for this process only "
                "(sessions end when it restarts; replicas would not share them)"
            )
            configured = [secrets.token_urlsafe(32)]
        secure = os.environ.get("GPUCLOUD_PORTAL_COOKIE_SECURE", "auto").strip().lower()
        if secure not in COOKIE_SECURE_CHOICES:
            raise ValueError(f"GPUCLOUD_PORTAL_COOKIE_SECURE={secure!r}: one of auto, true, false")
        stripe_key = os.environ.get("GPUCLOUD_PORTAL_STRIPE_PUBLISHABLE_KEY", "").strip() or None
        if stripe_key is not None and not stripe_key.startswith("pk_"):
            raise ValueError(
                "GPUCLOUD_PORTAL_STRIPE_PUBLISHABLE_KEY: Stripe's publishable key (pk_...), "
                "never the secret key"
            )
        return cls(
            service=service,
            stripe_publishable_key=stripe_key,
            gateway_url=os.environ.get("GPUCLOUD_GATEWAY_URL", cls.gateway_url).rstrip("/"),
            session_keys=tuple(_key(k) for k in configured),
            cookie_secure=secure,
            session_max_age_s=int(os.environ.get("GPUCLOUD_PORTAL_SESSION_MAX_AGE_S", "43200")),
            ephemeral_key=ephemeral,
        )
