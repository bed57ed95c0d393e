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
import json
import logging
from pathlib import Path
from typing import Any

import msgspec

from gpucloud_contracts.node_sync import DesiredBundle, WorkloadRuntime
from gpucloud_trust.bundle import (
    BundleError,
    Manifest,
    ReleaseClaim,
    VerifiedRelease,
    blob_path,
    verify_layout,
)
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


def _signed_manifest(bundle: DesiredBundle, bundle_dir: Path) -> dict[str, Any]:
    """The app manifest the bundle's config blob holds (covered by the release signature:
    the manifest digest names the config blob's digest)."""
    layout = bundle_dir / bundle.digest.removeprefix("sha256:")
    try:
        manifest = Manifest.parse(blob_path(layout, bundle.digest).read_bytes())
        config = json.loads(blob_path(layout, manifest.config.digest).read_bytes())
    except (OSError, ValueError) as exc:
        raise BundleError("runtime-unsigned", f"the bundle's config is unreadable: {exc}") from None
    if not isinstance(config, dict) or not isinstance(config.get("command"), list):
        raise BundleError("runtime-unsigned", "the bundle's config is not an app manifest")
    return config


def _ports(declared: Any) -> list[tuple[str, int, str, bool]]:
    return sorted(
        (p.get("name"), p.get("port"), p.get("protocol", "http"), bool(p.get("expose", False)))
        for p in declared or []
        if isinstance(p, dict)
    )


def check_runtime(bundle: DesiredBundle, bundle_dir: Path | None, runtime: WorkloadRuntime) -> None:
    """The runtime gpuaas sent must be the one the publisher signed: the same argv, ports and
    probe as the bundle's manifest, and environment variables only of names it declares
    (their values are the launcher's). Otherwise BundleError(`runtime-mismatch`): a control
    plane that lies about the command runs nothing. Needs the verified layout (bundle_dir)."""
    if bundle_dir is None:
        raise BundleError("runtime-unsigned", "no bundle directory: the runtime cannot be checked")
    signed = _signed_manifest(bundle, bundle_dir)
    wrong = []
    if list(runtime.command) != signed["command"]:
        wrong.append("command")
    if _ports([msgspec.to_builtins(p) for p in runtime.ports]) != _ports(signed.get("ports")):
        wrong.append("ports")
    probe = signed.get("probe")
    if isinstance(probe, dict):
        by_name = {p.get("name"): p.get("port") for p in signed.get("ports") or []}
        port = by_name.get(probe.get("port"), probe.get("port"))
        given = runtime.probe
        if (
            given is None
            or given.path != probe.get("path")
            or given.port != port
            or (given.headers or {}) != (probe.get("headers") or {})
        ):
            wrong.append("probe")
    elif runtime.probe is not None:
        wrong.append("probe")
    declared = set((signed.get("env") or {}).keys())
    undeclared = sorted(set(runtime.env or {}) - declared)
    if undeclared:
        wrong.append(f"env ({', '.join(undeclared)} not declared)")
    if wrong:
        raise BundleError(
            "runtime-mismatch", f"the runtime differs from the signed manifest: {', '.join(wrong)}"
        )


__all__ = ["BundleError", "check_runtime", "verify_before_run"]
