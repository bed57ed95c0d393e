"""The launch gate: may this bundle run, for this project, now?

One rule, applied by gpuaas to its projection of registry's events (before it places an
allocation) and by the node agent to the release it fetched from registry (after pulling,
before running). Both hold the same facts about a release: its tenant, app, version and
bundle digest, its release statements (DSSE envelopes), the channels it is promoted to, the
signer threshold each promotion's policy required, whether it is yanked, and the tenant's
publisher keys with their status and trust expiry.

A launch naming bundle digest D of app A at version V, in a project that requires channel C,
passes only if, in this order (the first failure is the reason given):

1. a release of A@V is known (``unknown-release``);
2. its bundle digest is D (``manifest-digest``: a tampered or substituted manifest);
3. it is not yanked (``yanked``);
4. it has a release statement (``unsigned``), signed by at least the threshold of C's policy
   of distinct keys that count now: not revoked, trust not expired (``revoked`` or
   ``expired`` when only such keys signed, ``untrusted`` when no known key did,
   ``below-threshold`` when too few count), saying this tenant, app and version;
5. it is promoted to C (``unpromoted``).

Key trust (`key_counts`): a revoked key counts for nothing, its past signatures included; a
key whose trust expired counts for nothing until the tenant renews it; an active or rotated
key counts. Only an active, unexpired key may sign something new (`key_may_sign`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gpucloud_trust.bundle import BundleError, ReleaseClaim, VerifiedRelease, release_signers
from gpucloud_trust.dsse import Envelope
from gpucloud_trust.keys import PublicKey

CHANNELS = ("dev", "staging", "stable")
ACTIVE, ROTATED, REVOKED = "active", "rotated", "revoked"
# The gate's own reasons, besides BundleError's (unsigned, untrusted, below-threshold, ...).
UNKNOWN_RELEASE, YANKED, UNPROMOTED = "unknown-release", "yanked", "unpromoted"
REVOKED_SIGNER, EXPIRED_SIGNER = "revoked", "expired"


def expired(expires_at: dt.datetime | None, now: dt.datetime) -> bool:
    return expires_at is not None and now >= expires_at


def key_counts(status: str, expires_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether signatures by a key in this status, with this trust expiry, count now."""
    return status in (ACTIVE, ROTATED) and not expired(expires_at, now)


def key_may_sign(status: str, expires_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether the key may sign a statement attached now."""
    return status == ACTIVE and not expired(expires_at, now)


@dataclass(frozen=True)
class TrustedKey:
    """A publisher key of the tenant as the verifier knows it."""

    public: PublicKey
    status: str
    expires_at: dt.datetime | None = None

    def counts(self, now: dt.datetime) -> bool:
        return key_counts(self.status, self.expires_at, now)


@dataclass(frozen=True)
class Release:
    """What the verifier knows about one published version."""

    tenant: str
    app: str
    version: str
    manifest_digest: str
    envelopes: Sequence[Envelope]  # the release statements, as attached
    channels: frozenset[str] = frozenset()
    yanked: bool = False
    # channel -> the signer threshold of the policy that promoted the release to it
    thresholds: Mapping[str, int] = field(default_factory=dict)

    @property
    def claim(self) -> ReleaseClaim:
        return ReleaseClaim(self.tenant, self.app, self.version)


class LaunchRefused(BundleError):
    """The gate's refusal; `reason` is a stable code (see the module docstring)."""


def check_launch(
    release: Release | None,
    manifest_digest: str,
    channel: str,
    keys: Sequence[TrustedKey],
    now: dt.datetime,
) -> VerifiedRelease:
    """Pass (the keys that counted) or raise LaunchRefused naming the first reason."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    if release is None:
        raise LaunchRefused(UNKNOWN_RELEASE, "no release of that app and version is known")
    if release.manifest_digest != manifest_digest:
        raise LaunchRefused(
            "manifest-digest",
            f"the release's bundle is {release.manifest_digest},"
            f" the launch names {manifest_digest}",
        )
    if release.yanked:
        raise LaunchRefused(YANKED, f"{release.app}@{release.version} is yanked")
    if not release.envelopes:
        raise LaunchRefused("unsigned", "no release statement")
    counting = [k.public for k in keys if k.counts(now)]
    signed = release_signers(release.envelopes, counting, manifest_digest, release.claim)
    if not signed:
        raise _why_no_signer(release, keys, manifest_digest, now)
    threshold = max(1, release.thresholds.get(channel, 1))
    if len(signed) < threshold:
        raise LaunchRefused(
            "below-threshold", f"{len(signed)} of the required {threshold} trusted signers"
        )
    if channel not in release.channels:
        promoted = ", ".join(c for c in CHANNELS if c in release.channels) or "no channel"
        raise LaunchRefused(UNPROMOTED, f"the project requires {channel}; promoted to {promoted}")
    return VerifiedRelease(manifest_digest, signed)


def _why_no_signer(
    release: Release, keys: Sequence[TrustedKey], manifest_digest: str, now: dt.datetime
) -> LaunchRefused:
    """No counting key signed: say whether known keys did (revoked, expired) or none."""
    for reason, wanted in (
        (REVOKED_SIGNER, [k.public for k in keys if k.status == REVOKED]),
        (EXPIRED_SIGNER, [k.public for k in keys if k.status != REVOKED and not k.counts(now)]),
    ):
        if wanted and release_signers(release.envelopes, wanted, manifest_digest, release.claim):
            return LaunchRefused(reason, f"the release is signed only by {reason} keys")
    return LaunchRefused("untrusted", "no trusted key signed a release statement of this bundle")


__all__ = [
    "CHANNELS",
    "LaunchRefused",
    "Release",
    "TrustedKey",
    "check_launch",
    "expired",
    "key_counts",
    "key_may_sign",
]
