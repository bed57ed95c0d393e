"""The node's own check of a bundle before it runs it, so that a compromised control plane
cannot make the node run something unsigned (docs/gpuaas.md, "Launch gate").

gpuaas's desired state names the bundle (namespace, app, version, manifest digest, the
channel the project required) with the release statements (DSSE envelopes, as registry
stored them) and the namespace's publisher keys. Before the workload starts the agent:

1. runs the launch rule again itself (`gpucloud_trust.gate.check_launch`): the envelopes
   must verify against a key that counts now, say this tenant, app and version, and name
   the digest gpuaas asked for; the release must be promoted to the channel and not yanked;
2. verifies the bytes it would run (`gpucloud_trust.bundle.verify_layout`): the manifest
   must hash to the digest and every blob to its descriptor. The bytes come from the pull
   cache `GPUCLOUD_NODE_BUNDLE_DIR/<hex>/` (an OCI image layout per manifest digest); one not
   there yet is pulled from the OCI registry first when GPUCLOUD_NODE_OCI_URL is set
   (node_agent/pull.py, the node's own registry credential). With no bundle directory set,
   step 2 is skipped and the agent runs its configured workload command (logged).

A failure raises `BundleError` whose `reason` the agent reports on its next sync; gpuaas
records the allocation failed with reason `bundle_<reason>`.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from pathlib import Path

from gpucloud_contracts.node_sync import DesiredBundle
from gpucloud_trust.bundle import BundleError, ReleaseClaim, VerifiedRelease, verify_layout
from gpucloud_trust.dsse import Envelope, InvalidEnvelope
from gpucloud_trust.gate import Release, TrustedKey, check_launch
from gpucloud_trust.keys import InvalidKey, PublicKey
from node_agent.pull import OciPuller

log = logging.getLogger(__name__)


def _envelopes(bundle: DesiredBundle) -> tuple[Envelope, ...]:
    out = []
    for text in bundle.envelopes:
        try:
            out.append(Envelope.from_json(text))
        except InvalidEnvelope:
            continue  # counts for nothing, like a signature that does not verify
    return tuple(out)


def _keys(bundle: DesiredBundle) -> list[TrustedKey]:
    out = []
    for k in bundle.keys:
        try:
            out.append(TrustedKey(PublicKey.from_base64(k.public_key), k.status, k.expires_at))
        except InvalidKey:
            continue
    return out


@functools.cache
def _puller() -> OciPuller | None:
    return OciPuller.from_env()


def verify_before_run(
    bundle: DesiredBundle, bundle_dir: Path | None, now: dt.datetime | None = None
) -> VerifiedRelease:
    """Pass (the keys that counted) or raise BundleError naming the first reason."""
    now = now or dt.datetime.now(dt.UTC)
    envelopes = _envelopes(bundle)
    release = Release(
        tenant=str(bundle.tenant_id),
        app=bundle.app,
        version=bundle.version,
        manifest_digest=bundle.digest,
        envelopes=envelopes,
        # gpuaas sends the bundle only while the allocation is desired: promoted and live
        channels=frozenset({bundle.channel}),
        thresholds=dict(bundle.thresholds),
    )
    keys = _keys(bundle)
    verified = check_launch(release, bundle.digest, bundle.channel, keys, now)
    if bundle_dir is None:
        log.warning(
            "bundle signature verified; no GPUCLOUD_NODE_BUNDLE_DIR, so its bytes are not",
            extra={"fields": {"digest": bundle.digest, "app": bundle.app}},
        )
        return verified
    if (puller := _puller()) is not None:
        puller.ensure(bundle.tenant_id, bundle.app, bundle.digest, bundle_dir)
    threshold = max(1, bundle.thresholds.get(bundle.channel, 1))
    return verify_layout(
        bundle_dir / bundle.digest.removeprefix("sha256:"),
        envelopes,
        [k.public for k in keys if k.counts(now)],
        manifest_digest=bundle.digest,
        threshold=threshold,
        claim=ReleaseClaim(str(bundle.tenant_id), bundle.app, bundle.version),
    )


__all__ = ["BundleError", "verify_before_run"]
