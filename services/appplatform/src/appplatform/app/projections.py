"""appplatform's projections, each an inbox consumer (a redelivered event changes nothing):

- registry.release.v1 -> `releases` (the catalog): every release event carries the whole
  release; rows are kept at the highest `sequence`, so an event delivered late is ignored.
  Only releases whose bundle carries an app manifest are kept (other bundles are not apps);
- iam.project.v1 -> `projects`, iam.tenant.v1 -> `tenants`;
- gpuaas.node.v1 -> `nodes` (name and agent URL for the port proxy and logs).

No call to another service: this is all appplatform knows of them.
"""

from __future__ import annotations

import logging

import msgspec

from appplatform.domain.catalog import check_release_manifest
from appplatform.store import repository as repo
from gpucloud_contracts.events.gpuaas import NodeChanged
from gpucloud_contracts.events.iam import ProjectCreated, TenantCreated, TenantSuspended
from gpucloud_contracts.events.registry import ReleaseChanged
from platformkit.consumers import Handler
from platformkit.db import UnitOfWork
from platformkit.envelope import CloudEvent

log = logging.getLogger(__name__)

PROJECT_CREATED = "iam.project.created"
TENANT_CREATED, TENANT_SUSPENDED = "iam.tenant.created", "iam.tenant.suspended"


def release_row(release: ReleaseChanged) -> dict | None:
    """The catalog row of a release event, or None when its bundle is no app."""
    data = release.bundle.app_manifest
    if data is None:
        return None
    checked = check_release_manifest(data, release.app, release.version)
    manifest = checked.manifest
    return {
        "version_id": release.version_id,
        "tenant_id": release.tenant_id,
        "app_id": release.app_id,
        "app": release.app,
        "project_id": release.project_id,
        "version": release.version,
        "manifest_digest": release.bundle.manifest_digest,
        "manifest": None if manifest is None else msgspec.json.encode(manifest).decode(),
        "manifest_error": checked.error,
        "description": None if manifest is None else manifest.description,
        "channels": list(release.channels),
        "yanked": release.yanked,
        "sequence": release.sequence,
        "occurred_at": release.occurred_at,
    }


def release_handler() -> Handler:
    async def apply_release_event(event: CloudEvent, uow: UnitOfWork) -> None:
        release = msgspec.json.decode(event.data, type=ReleaseChanged)
        row = release_row(release)
        if row is None:
            return
        if row["manifest_error"]:
            log.warning(
                "release %s of %s has an invalid app manifest: %s",
                release.version,
                release.app,
                row["manifest_error"],
            )
        await repo.upsert_release(uow, row)

    return apply_release_event


def project_handler() -> Handler:
    async def apply_project_event(event: CloudEvent, uow: UnitOfWork) -> None:
        if event.type != PROJECT_CREATED:
            return
        project = msgspec.json.decode(event.data, type=ProjectCreated)
        await repo.remember_project(uow, project.project_id, project.tenant_id, project.created_at)

    return apply_project_event


def tenant_handler() -> Handler:
    async def apply_tenant_event(event: CloudEvent, uow: UnitOfWork) -> None:
        if event.type == TENANT_CREATED:
            created = msgspec.json.decode(event.data, type=TenantCreated)
            await repo.set_tenant_status(uow, created.tenant_id, created.status, created.created_at)
        elif event.type == TENANT_SUSPENDED:
            suspended = msgspec.json.decode(event.data, type=TenantSuspended)
            await repo.set_tenant_status(
                uow, suspended.tenant_id, "suspended", suspended.suspended_at
            )

    return apply_tenant_event


def node_handler() -> Handler:
    async def apply_node_event(event: CloudEvent, uow: UnitOfWork) -> None:
        node = msgspec.json.decode(event.data, type=NodeChanged)
        await repo.upsert_node(
            uow, node.node_id, node.name, node.agent_url, node.sku, node.state, node.occurred_at
        )

    return apply_node_event
