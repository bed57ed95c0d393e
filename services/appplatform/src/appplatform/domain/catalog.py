"""The app catalog's rules, pure: which releases an app catalog entry is built from, and what
of a release's manifest the catalog shows.

A release enters the catalog when registry's event carries its bundle's app manifest
(`bundle.app_manifest`, the signed config blob) and that manifest validates
(gpucloud_manifest) for this app and version. It shows while it is promoted to
at least one channel and not yanked. The platform-public namespace (tenant id all zeros)
shows to every tenant.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from gpucloud_manifest import Manifest, ManifestError, validate

PLATFORM = uuid.UUID(int=0)  # registry's platform-public namespace
CHANNELS = ("dev", "staging", "stable")


@dataclass(frozen=True)
class CheckedManifest:
    manifest: Manifest | None
    error: str | None


def check_release_manifest(data: dict[str, Any], app: str, version: str) -> CheckedManifest:
    """The release's manifest, or why it cannot be one (it names another app or version, or
    it is invalid: every problem listed)."""
    try:
        manifest = validate(data)
    except ManifestError as error:
        return CheckedManifest(None, "; ".join(error.problems))
    problems = []
    if manifest.name != app:
        problems.append(f"name: {manifest.name!r} is not the release's app {app!r}")
    if manifest.version != version:
        problems.append(f"version: {manifest.version!r} is not the release's {version!r}")
    if manifest.bundle is not None:
        problems.append("bundle: a published release's manifest names no bundle (it is one)")
    if problems:
        return CheckedManifest(None, "; ".join(problems))
    return CheckedManifest(manifest, None)


def is_platform(tenant_id: uuid.UUID) -> bool:
    return tenant_id == PLATFORM


def visible_namespaces(tenant_id: uuid.UUID | None) -> list[uuid.UUID]:
    """A caller sees its own tenant's apps and the public ones."""
    return [PLATFORM] if tenant_id is None or tenant_id == PLATFORM else [tenant_id, PLATFORM]
