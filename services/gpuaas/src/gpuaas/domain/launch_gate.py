"""The launch gate's decision (docs/gpuaas.md, "Launch gate"): may a launch that names a
bundle run it, from what gpuaas's projection holds about the release and the tenant's keys?

Pure: the caller reads the projection rows (`ReleaseFacts`, `KeyFacts`) and the project's
required channel; `decide` answers `Allowed` or `Refused` with a stable reason and no I/O.
The rule itself is gpucloud_trust.gate.check_launch, the one the node agent applies again
before it runs the bundle; this module adds what only gpuaas knows: that a tenant's app is
launchable only from its own project (another project's app reads as unknown), and how rows
become the library's types (an envelope that does not parse counts for nothing, like a
signature that does not verify).

Reasons, first failure wins: `unknown-release`, `manifest-digest` (tampered: the release
signed another manifest than the launch names), `yanked`, `unsigned`, `untrusted`,
`revoked`, `expired`, `below-threshold`, `unpromoted`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gpucloud_trust.dsse import Envelope, InvalidEnvelope
from gpucloud_trust.gate import CHANNELS, LaunchRefused, Release, TrustedKey, check_launch
from gpucloud_trust.keys import InvalidKey, PublicKey

PLATFORM = uuid.UUID(int=0)  # registry's platform-public namespace
DEFAULT_CHANNEL = "stable"
REASONS = (
    "unknown-release",
    "manifest-digest",
    "yanked",
    "unsigned",
    "untrusted",
    "revoked",
    "expired",
    "below-threshold",
    "unpromoted",
)


@dataclass(frozen=True)
class BundleRequest:
    """What a launch names: an app of its own project (or of the platform-public catalog),
    the version, and the bundle (manifest) digest the caller expects to run."""

    app: str
    version: str
    digest: str
    platform: bool = False


@dataclass(frozen=True)
class ReleaseFacts:
    """One row of the release projection."""

    tenant_id: uuid.UUID
    project_id: uuid.UUID | None
    app: str
    version: str
    manifest_digest: str
    envelopes: Sequence[str]  # DSSE JSON of the release statements
    channels: frozenset[str]
    yanked: bool
    thresholds: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class KeyFacts:
    """One row of the publisher-key projection."""

    public_key: bytes  # raw Ed25519
    status: str
    expires_at: dt.datetime | None = None


@dataclass(frozen=True)
class Allowed:
    namespace: uuid.UUID
    channel: str
    signer_key_ids: tuple[str, ...]


@dataclass(frozen=True)
class Refused:
    reason: str
    detail: str


def namespace_of(tenant_id: uuid.UUID, request: BundleRequest) -> uuid.UUID:
    return PLATFORM if request.platform else tenant_id


def decide(
    tenant_id: uuid.UUID,
    project_id: uuid.UUID,
    request: BundleRequest,
    required_channel: str,
    release: ReleaseFacts | None,
    keys: Sequence[KeyFacts],
    now: dt.datetime,
) -> Allowed | Refused:
    if required_channel not in CHANNELS:
        raise ValueError(f"unknown channel {required_channel!r}")
    namespace = namespace_of(tenant_id, request)
    if release is not None and (
        release.tenant_id != namespace
        or (not request.platform and release.project_id != project_id)
    ):
        release = None  # another tenant's or project's app reads as unknown
    try:
        verified = check_launch(
            _release(release), request.digest, required_channel, _keys(keys), now
        )
    except LaunchRefused as refused:
        return Refused(refused.reason, refused.detail)
    return Allowed(namespace, required_channel, verified.signer_keyids)


def _release(facts: ReleaseFacts | None) -> Release | None:
    if facts is None:
        return None
    envelopes = []
    for text in facts.envelopes:
        try:
            envelopes.append(Envelope.from_json(text))
        except InvalidEnvelope:
            continue
    return Release(
        tenant=str(facts.tenant_id),
        app=facts.app,
        version=facts.version,
        manifest_digest=facts.manifest_digest,
        envelopes=tuple(envelopes),
        channels=frozenset(facts.channels),
        yanked=facts.yanked,
        thresholds=dict(facts.thresholds),
    )


def _keys(keys: Sequence[KeyFacts]) -> list[TrustedKey]:
    out = []
    for k in keys:
        try:
            out.append(TrustedKey(PublicKey.from_raw(bytes(k.public_key)), k.status, k.expires_at))
        except InvalidKey:
            continue
    return out


class DecisionMemo:
    """`decide` again for inputs already decided, without the signature checks: a bounded
    memo (oldest entry dropped first) keyed by everything `decide` reads except `now`.

    Time enters the decision only through key trust expiry (`now >= expires_at`), so an
    outcome holds from the moment it was decided until the earliest expiry still ahead of
    it; after that (or if the clock stepped back) it is decided again. Any change of the
    release row (a promotion, a yank, a new statement) or of a key (status, expiry) is a
    different key of the memo, so a stale outcome is never answered."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._memo: dict[
            tuple[object, ...], tuple[Allowed | Refused, dt.datetime, dt.datetime | None]
        ] = {}

    def decide(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        request: BundleRequest,
        required_channel: str,
        release: ReleaseFacts | None,
        keys: Sequence[KeyFacts],
        now: dt.datetime,
    ) -> Allowed | Refused:
        key = (
            tenant_id, project_id, request, required_channel, _release_key(release),
            tuple((bytes(k.public_key), k.status, k.expires_at) for k in keys),
        )  # fmt: skip
        hit = self._memo.get(key)
        if hit is not None:
            outcome, decided_at, valid_until = hit
            if decided_at <= now and (valid_until is None or now < valid_until):
                return outcome
        outcome = decide(tenant_id, project_id, request, required_channel, release, keys, now)
        ahead = [k.expires_at for k in keys if k.expires_at is not None and k.expires_at > now]
        self._memo.pop(key, None)
        if len(self._memo) >= self.size:
            del self._memo[next(iter(self._memo))]
        self._memo[key] = (outcome, now, min(ahead) if ahead else None)
        return outcome


def _release_key(r: ReleaseFacts | None) -> tuple[object, ...] | None:
    if r is None:
        return None
    return (
        r.tenant_id, r.project_id, r.app, r.version, r.manifest_digest, tuple(r.envelopes),
        r.channels, r.yanked, tuple(sorted(r.thresholds.items())),
    )  # fmt: skip
