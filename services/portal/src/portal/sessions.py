"""Browser sessions without server-side state: the whole session (iam's tokens included) is
sealed into one cookie with AES-256-GCM under a key from settings, so every replica opens
every session and the portal keeps no database (it owns no business data).

The cookie is HttpOnly, SameSite=Lax, Secure when the request came over TLS, and named
`__Host-gpucloud_session` then (the prefix makes the browser refuse it without Secure, a
Path other than / or a Domain). A tampered, truncated, expired or foreign cookie opens as
nothing: the visitor is anonymous. Each session carries its own random CSRF token
(portal.csrf); a new session (sign-in, sign-out) gets a new one, so a token seen before
sign-in is worth nothing after it.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

COOKIE = "gpucloud_session"
SECURE_COOKIE = "__Host-gpucloud_session"
_VERSION = b"\x01"
_AAD = b"gpucloud-portal-session-v1"
# The password of a sign-in waiting for its second factor is kept this long, no longer.
PENDING_SIGN_IN_S = 300


class PendingTopUp(msgspec.Struct, kw_only=True):
    """The last top-up this session created (with Stripe): its Idempotency-Key and amount,
    so the payment page can ask billing again for the PaymentIntent's client_secret (the
    same request with the same key; billing answers it while the payment is pending or
    failed) after a reload or a declined card. The secret itself is never kept."""

    payment_id: str
    key: str
    amount_micros: int

    def __repr__(self) -> str:
        return f"PendingTopUp(payment_id={self.payment_id!r})"


class PendingSignIn(msgspec.Struct, kw_only=True):
    """A password grant that iam answered `mfa_required`: the second step sends it again
    with the code (iam takes both in one request and keeps no challenge state)."""

    email: str
    password: str
    tenant: str | None = None
    expires: float

    def __repr__(self) -> str:  # never render the password
        return f"PendingSignIn(email={self.email!r})"


class Session(msgspec.Struct, kw_only=True, omit_defaults=True):
    sid: str
    csrf: str
    created: float
    kind: str = "anonymous"  # anonymous | user | operator
    access_token: str | None = None
    refresh_token: str | None = None
    access_expires: float = 0.0
    email: str | None = None
    subject: str | None = None
    tenant_id: str | None = None
    tenant_slug: str | None = None
    tenant_name: str | None = None
    project_id: str | None = None
    roles: list[str] = []
    project_roles: dict[str, list[str]] = {}
    amr: list[str] = []
    restricted: str | None = None  # iam's mfa_enrollment-only token
    pending: PendingSignIn | None = None
    top_up: PendingTopUp | None = None

    def __repr__(self) -> str:  # tokens and the pending password stay out of logs
        return f"Session(sid={self.sid[:6]}..., kind={self.kind!r}, email={self.email!r})"

    @property
    def signed_in(self) -> bool:
        return self.kind in ("user", "operator") and bool(self.access_token)

    @property
    def operator(self) -> bool:
        return self.kind == "operator"


def new_session(now: float | None = None) -> Session:
    return Session(
        sid=secrets.token_urlsafe(16),
        csrf=secrets.token_urlsafe(32),
        created=time.time() if now is None else now,
    )


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Session)


def seal(session: Session, key: bytes) -> str:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(key).encrypt(nonce, _encoder.encode(session), _AAD)
    return base64.urlsafe_b64encode(_VERSION + nonce + sealed).rstrip(b"=").decode()


def unseal(value: str, keys: tuple[bytes, ...], max_age_s: float, now: float) -> Session | None:
    """The session in a cookie value, or None for anything not sealed by one of `keys`,
    malformed, or older than `max_age_s`."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) < 1 + 12 + 16 or raw[:1] != _VERSION:
        return None
    nonce, sealed = raw[1:13], raw[13:]
    for key in keys:
        try:
            plain = AESGCM(key).decrypt(nonce, sealed, _AAD)
        except InvalidTag:
            continue
        try:
            session = _decoder.decode(plain)
        except msgspec.DecodeError:
            return None
        if not 0 <= now - session.created <= max_age_s:
            return None
        if session.pending is not None and session.pending.expires < now:
            session.pending = None
        return session
    return None
