"""registry's projection of iam's projects (iam.project.v1, inbox consumer): an app is
created only in a project that iam created in the same tenant. A project iam has just created
may not be projected yet for a moment: creating an app there answers 404 until it is."""

from __future__ import annotations

import uuid

import msgspec

from gpucloud_contracts.events.iam import ProjectCreated
from platformkit.consumers import Handler
from platformkit.db import UnitOfWork
from platformkit.envelope import CloudEvent
from platformkit.errors import NotFound
from registry.domain.apps import is_platform
from registry.store import repository as repo


def project_handler() -> Handler:
    async def apply_project_event(event: CloudEvent, uow: UnitOfWork) -> None:
        project = msgspec.json.decode(event.data, type=ProjectCreated)
        await repo.remember_project(uow, project.project_id, project.tenant_id, project.created_at)

    return apply_project_event


async def require_project(uow: UnitOfWork, tenant_id: uuid.UUID, project_id: uuid.UUID) -> None:
    """404 unless iam created this project in this tenant (the platform namespace aside)."""
    if is_platform(tenant_id):
        return
    if not await repo.project_exists(uow, tenant_id, project_id):
        raise NotFound(f"project {project_id} not found in this tenant")
