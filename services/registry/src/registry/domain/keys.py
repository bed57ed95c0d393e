"""Trusted publisher keys of a tenant: their lifecycle (docs/state-machines.md).

    active -> rotated (a successor key takes over) -> revoked
    active -> revoked

An active key's signatures count and it may sign new statements. A rotated key's existing
signatures still count (rotation is routine, not compromise), but statements attached after
the rotation must be signed by a key that is active. A revoked key (terminal) counts for
nothing, for past and future signatures alike: every promotion decided from now on, and every
launch gate, ignores it.

Besides its status, a key may carry a trust expiry (`expires_at`): from then on it counts for
nothing, like a revoked key, until the tenant renews it (a later expiry, or none); renewing
never revives a revoked key. The rule itself is `gpucloud_trust.gate` (key_counts,
key_may_sign), shared with gpuaas and the node agent, so all three decide alike.
"""

from __future__ import annotations

import datetime as dt
import enum

from gpucloud_trust.gate import key_counts, key_may_sign
from registry.domain.channels import IllegalTransition


class KeyStatus(enum.StrEnum):
    ACTIVE = "active"
    ROTATED = "rotated"
    REVOKED = "revoked"


def counts(status: KeyStatus | str, expires_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether signatures by a key in this status, with this trust expiry, count now."""
    return key_counts(KeyStatus(status).value, expires_at, now)


def may_sign_new(status: KeyStatus | str, expires_at: dt.datetime | None, now: dt.datetime) -> bool:
    return key_may_sign(KeyStatus(status).value, expires_at, now)


def rotate(status: KeyStatus | str) -> KeyStatus:
    if KeyStatus(status) != KeyStatus.ACTIVE:
        raise IllegalTransition("key-not-active", f"only an active key is rotated (it is {status})")
    return KeyStatus.ROTATED


def revoke(status: KeyStatus | str) -> KeyStatus:
    if KeyStatus(status) == KeyStatus.REVOKED:
        raise IllegalTransition("key-revoked", "the key is already revoked")
    return KeyStatus.REVOKED


def renew(status: KeyStatus | str, expires_at: dt.datetime | None, now: dt.datetime) -> None:
    """A new trust expiry (None: never); only in the future, never for a revoked key."""
    if KeyStatus(status) == KeyStatus.REVOKED:
        raise IllegalTransition("key-revoked", "a revoked key is never trusted again")
    check_expiry(expires_at, now)


class InvalidExpiry(ValueError):
    pass


def check_expiry(expires_at: dt.datetime | None, now: dt.datetime) -> None:
    if expires_at is None:
        return
    if expires_at.tzinfo is None:
        raise InvalidExpiry("must carry a time zone (UTC)")
    if expires_at <= now:
        raise InvalidExpiry("must be in the future")
