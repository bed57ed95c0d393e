"""Trusted publisher keys of a tenant: their lifecycle (docs/state-machines.md).

    active -> rotated (a successor key takes over) -> revoked
    active -> revoked

An active key's signatures count and it may sign new statements. A rotated key's existing
signatures still count (rotation is routine, not compromise), but statements attached after
the rotation must be signed by a key that is active. A revoked key (terminal) counts for
nothing, for past and future signatures alike: every promotion decided from now on, and every
launch gate, ignores it.
"""

from __future__ import annotations

import enum

from registry.domain.channels import IllegalTransition


class KeyStatus(enum.StrEnum):
    ACTIVE = "active"
    ROTATED = "rotated"
    REVOKED = "revoked"


def counts(status: KeyStatus | str) -> bool:
    """Whether signatures by a key in this status count."""
    return KeyStatus(status) in (KeyStatus.ACTIVE, KeyStatus.ROTATED)


def may_sign_new(status: KeyStatus | str) -> bool:
    return KeyStatus(status) == KeyStatus.ACTIVE


def rotate(status: KeyStatus | str) -> KeyStatus:
    if KeyStatus(status) != KeyStatus.ACTIVE:
        raise IllegalTransition("key-not-active", f"only an active key is rotated (it is {status})")
    return KeyStatus.ROTATED


def revoke(status: KeyStatus | str) -> KeyStatus:
    if KeyStatus(status) == KeyStatus.REVOKED:
        raise IllegalTransition("key-revoked", "the key is already revoked")
    return KeyStatus.REVOKED
