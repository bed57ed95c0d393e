"""Apps, blobs and versions: the catalog of record.

Blobs are uploaded through registry (never pushed by publishers straight to the OCI
registry): registry hashes the bytes while it streams them into the app's OCI repository and
commits the upload only when they match the digest in the path, so no unverified byte is ever
stored and publishers never hold OCI credentials. A version is then published from a manifest
naming only blobs uploaded to that app; registry pushes the exact manifest bytes to the OCI
registry (which checks every blob it names exists) and records version, bundle and blobs in
one transaction with `registry.version.published`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from gpucloud_trust.bundle import CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, BundleError, Manifest
from gpucloud_trust.digests import InvalidDigest, check_digest
from platformkit.db import Database, UnitOfWork
from platformkit.errors import NotFound, ServiceUnavailable
from platformkit.ids import uuid7
from registry.app.common import Actor, Refused, StateConflict, emit, idempotent, invalid
from registry.app.projects import require_project
from registry.app.releases import VERSION_PUBLISHED, release_document
from registry.domain import apps as apps_domain
from registry.domain.channels import ReleaseState
from registry.domain.semver import InvalidVersion, Version
from registry.oci import DigestMismatch, OciClient, OciError, TooLarge
from registry.store import repository as repo


@dataclass(frozen=True)
class AppRef:
    """An app as a route names it: namespace (tenant, project) and name."""

    tenant_id: uuid.UUID
    project_id: uuid.UUID | None
    name: str


def app_out(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "project_id": row["project_id"],
        "name": row["name"],
        "description": row["description"],
        "created_by": row["created_by"],
        "created_at": row["created_at"],
    }


async def require_app(uow: UnitOfWork, ref: AppRef) -> Any:
    app = await repo.find_app(uow, ref.tenant_id, ref.project_id, ref.name)
    if app is None:
        raise NotFound(f"app {ref.name!r} not found")
    return app


async def require_version(uow: UnitOfWork, app: Any, version: str, *, lock: bool = False) -> Any:
    row = await repo.find_version(uow, app["id"], version, lock=lock)
    if row is None:
        raise NotFound(f"version {version!r} of {app['name']!r} not found")
    return row


async def create_app(
    db: Database,
    tenant_id: uuid.UUID,
    project_id: uuid.UUID,
    name: str,
    description: str,
    actor: Actor,
    key: str | None,
) -> tuple[int, bytes]:
    try:
        apps_domain.check_name(name)
    except apps_domain.InvalidName as exc:
        raise invalid("name", str(exc)) from None

    async def work(uow: UnitOfWork) -> tuple[int, Any]:
        await require_project(uow, tenant_id, project_id)
        row = await repo.insert_app(
            uow,
            {
                "id": uuid7(),
                "tenant_id": tenant_id,
                "project_id": project_id,
                "name": name,
                "description": description,
                "created_by": actor.subject,
            },
        )
        if row is None:
            raise StateConflict("app-exists", f"an app named {name!r} exists in this namespace")
        return 201, app_out(row)

    scope = f"registry.apps.{tenant_id}"
    request = {"project": str(project_id), "name": name, "description": description}
    return await idempotent(db, scope, key, request, work)


async def get_app(db: Database, ref: AppRef) -> dict[str, Any]:
    async with db.unit_of_work() as uow:
        return app_out(await require_app(uow, ref))


async def list_apps(
    db: Database, tenant_id: uuid.UUID, project_id: uuid.UUID | None, limit: int, after: str
) -> list[dict[str, Any]]:
    async with db.unit_of_work() as uow:
        return [app_out(r) for r in await repo.list_apps(uow, tenant_id, project_id, limit, after)]


def _digest(value: str, field: str = "digest") -> str:
    try:
        return check_digest(value)
    except InvalidDigest as exc:
        raise invalid(field, str(exc)) from None


async def upload_blob(
    db: Database,
    oci: OciClient,
    ref: AppRef,
    digest: str,
    chunks: AsyncIterator[bytes],
    actor: Actor,
    max_size: int,
) -> tuple[bool, int]:
    """Stream the blob into the app's OCI repository, verified. Returns (created, size); an
    already uploaded blob answers at once without reading the body."""
    digest = _digest(digest)
    async with db.unit_of_work() as uow:
        app = await require_app(uow, ref)
        known = await repo.find_artifact(uow, app["id"], digest)
    if known is not None:
        return False, known["size"]
    repository = apps_domain.repository(app["tenant_id"], app["name"])
    try:
        uploaded = await oci.upload_blob(repository, digest, chunks, max_size)
    except DigestMismatch as exc:
        raise Refused(["digest-mismatch"], str(exc), field="digest") from None
    except TooLarge as exc:
        raise Refused(["too-large"], str(exc), field="body") from None
    except OciError as exc:
        raise ServiceUnavailable(f"the blob store is unavailable: {exc}") from None
    async with db.unit_of_work() as uow:
        await repo.insert_artifact(uow, app["id"], digest, uploaded.size, actor.subject)
        await uow.commit()
    return True, uploaded.size


async def open_blob(db: Database, oci: OciClient, ref: AppRef, digest: str):
    """A streaming response of a blob the app owns (LookupError: not one of the app's)."""
    digest = _digest(digest)
    async with db.unit_of_work() as uow:
        app = await require_app(uow, ref)
        known = await repo.find_artifact(uow, app["id"], digest)
    if known is None:
        raise NotFound(f"blob {digest} not found")
    try:
        return await oci.open_blob(apps_domain.repository(app["tenant_id"], app["name"]), digest)
    except LookupError:
        raise NotFound(f"blob {digest} is missing from the blob store") from None
    except OciError as exc:
        raise ServiceUnavailable(f"the blob store is unavailable: {exc}") from None


# The largest config blob read as an app manifest: a gpucloud.yaml is a few KiB.
APP_MANIFEST_MAX_BYTES = 64 * 1024


async def _app_manifest(
    oci: OciClient, repository: str, manifest: Manifest
) -> dict[str, Any] | None:
    """The bundle's config blob as a JSON object, when it is a gpucloud config of at most
    APP_MANIFEST_MAX_BYTES: the signed app manifest every release event carries. Read back from
    the OCI registry and hashed again, so what the events carry is what the digest names."""
    config = manifest.config
    if config.media_type != CONFIG_MEDIA_TYPE or config.size > APP_MANIFEST_MAX_BYTES:
        return None
    try:
        response = await oci.open_blob(repository, config.digest)
    except (LookupError, OciError) as exc:
        raise ServiceUnavailable(f"the blob store did not return the config blob: {exc}") from None
    try:
        raw = b""
        async for chunk in response.aiter_bytes():
            raw += chunk
            if len(raw) > APP_MANIFEST_MAX_BYTES:
                return None
    finally:
        await response.aclose()
    if "sha256:" + hashlib.sha256(raw).hexdigest() != config.digest:
        raise ServiceUnavailable("the blob store returned other bytes for the config blob")
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _manifest(encoded: str) -> Manifest:
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("manifest", "must be the manifest bytes in standard base64") from None
    try:
        return Manifest.parse(raw)
    except BundleError as exc:
        raise invalid("manifest", exc.detail) from None


async def publish_version(
    db: Database,
    oci: OciClient,
    ref: AppRef,
    version_text: str,
    manifest_b64: str,
    actor: Actor,
    key: str | None,
) -> tuple[int, bytes]:
    try:
        version = Version.parse(version_text)
    except InvalidVersion as exc:
        raise invalid("version", str(exc)) from None
    manifest = _manifest(manifest_b64)
    precedence = str(Version(version.major, version.minor, version.patch, version.prerelease))

    async with db.unit_of_work() as uow:
        app = await require_app(uow, ref)
        existing = await repo.find_version_by_precedence(uow, app["id"], precedence)
        if existing is not None and not (key and existing["manifest_digest"] == manifest.digest):
            raise StateConflict(
                "version-exists",
                f"{existing['version']} is published and immutable (same precedence as"
                f" {version_text})",
            )
        have = await repo.artifacts(uow, app["id"], [d.digest for d in manifest.blobs])
    missing = [d.digest for d in manifest.blobs if d.digest not in have]
    if missing:
        raise Refused(["blob-missing"], f"upload these blobs first: {', '.join(missing)}")
    wrong = [d.digest for d in manifest.blobs if have[d.digest] != d.size]
    if wrong:
        raise Refused(["blob-size"], f"the manifest's sizes disagree with the blobs: {wrong}")
    repository = apps_domain.repository(app["tenant_id"], app["name"])
    try:
        # The OCI registry refuses a manifest naming a blob it lacks (second check).
        await oci.put_manifest(repository, manifest.digest, manifest.raw, MANIFEST_MEDIA_TYPE)
    except OciError as exc:
        raise ServiceUnavailable(f"the blob store refused the manifest: {exc}") from None
    app_manifest = await _app_manifest(oci, repository, manifest)

    async def work(uow: UnitOfWork) -> tuple[int, Any]:
        await repo.insert_bundle(
            uow,
            {
                "app_id": app["id"],
                "manifest_digest": manifest.digest,
                "manifest": manifest.raw,
                "media_type": MANIFEST_MEDIA_TYPE,
                "artifact_type": manifest.artifact_type,
                "total_size": manifest.total_size,
                "app_manifest": None if app_manifest is None else json.dumps(app_manifest),
            },
            [
                {
                    "app_id": app["id"],
                    "manifest_digest": manifest.digest,
                    "position": i,
                    "role": "config" if i == 0 else "layer",
                    "digest": d.digest,
                    "size": d.size,
                    "media_type": d.media_type,
                }
                for i, d in enumerate(manifest.blobs)
            ],
        )
        row = await repo.insert_version(
            uow,
            {
                "id": uuid7(),
                "app_id": app["id"],
                "version": version_text,
                "precedence": precedence,
                "manifest_digest": manifest.digest,
                "published_by": actor.subject,
            },
        )
        if row is None:
            raise StateConflict("version-exists", f"{version_text} is published and immutable")
        document = await release_document(uow, app, row, actor=actor.subject)
        await emit(uow, VERSION_PUBLISHED, row["id"], document, app["tenant_id"])
        return 201, document

    scope = f"registry.versions.{app['id']}"
    return await idempotent(db, scope, key, {"v": version_text, "m": manifest.digest}, work)


async def list_versions(db: Database, ref: AppRef) -> list[dict[str, Any]]:
    async with db.unit_of_work() as uow:
        app = await require_app(uow, ref)
        rows = await repo.list_versions(uow, app["id"])
    ordered = sorted(rows, key=lambda r: Version.parse(r["version"]), reverse=True)
    return [
        {
            "id": r["id"],
            "version": r["version"],
            "manifest_digest": r["manifest_digest"],
            "channels": [c.value for c in ReleaseState.of(_channels(r), r["yanked"]).live_channels],
            "yanked": r["yanked"],
            "published_by": r["published_by"],
            "published_at": r["published_at"],
        }
        for r in ordered
    ]


def _channels(row: Any) -> list[str]:
    return [c for c in row["channels"] if c]


async def get_release(db: Database, ref: AppRef, version: str):
    async with db.unit_of_work() as uow:
        app = await require_app(uow, ref)
        row = await require_version(uow, app, version)
        return await release_document(uow, app, row)


async def get_manifest(db: Database, ref: AppRef, version: str) -> tuple[bytes, str]:
    """The version's manifest, the exact bytes the publisher signed, and their media type:
    what a node pulls first (its sha256 is the bundle digest)."""
    async with db.unit_of_work() as uow:
        app = await require_app(uow, ref)
        row = await require_version(uow, app, version)
        bundle = await repo.bundle(uow, app["id"], row["manifest_digest"])
    return bytes(bundle["manifest"]), bundle["media_type"]
