"""gpuaas's projection of iam's projects (iam.project.v1) and tenants' status
(iam.tenant.v1), both inbox consumers, and the one authorization call of every project
route: the caller's scope (domain.access), the project known in that tenant, then the role.

A project iam has just created may not be projected yet for a moment: a request naming it
answers 404 until it is (callers that create a project and launch at once retry briefly)."""

from __future__ import annotations

import uuid

import msgspec

from gpuaas.app.errors import TenantSuspendedProblem
from gpuaas.domain.access import Action, allows, reaches
from gpuaas.store.repository import ProjectRepository
from gpucloud_contracts.events.iam import ProjectCreated, TenantCreated, TenantSuspended
from platformkit.auth import Principal
from platformkit.consumers import Handler
from platformkit.db import Database, UnitOfWork
from platformkit.envelope import CloudEvent
from platformkit.errors import Forbidden, NotFound

PROJECT_CREATED = "iam.project.created"
TENANT_CREATED, TENANT_SUSPENDED = "iam.tenant.created", "iam.tenant.suspended"


def project_handler() -> Handler:
    async def apply_project_event(event: CloudEvent, uow: UnitOfWork) -> None:
        if event.type != PROJECT_CREATED:
            return
        project = msgspec.json.decode(event.data, type=ProjectCreated)
        await ProjectRepository(uow).remember(
            project.project_id, project.tenant_id, project.created_at
        )

    return apply_project_event


def tenant_handler() -> Handler:
    async def apply_tenant_event(event: CloudEvent, uow: UnitOfWork) -> None:
        repo = ProjectRepository(uow)
        if event.type == TENANT_CREATED:
            created = msgspec.json.decode(event.data, type=TenantCreated)
            await repo.tenant_created(created.tenant_id, created.status, created.created_at)
        elif event.type == TENANT_SUSPENDED:
            suspended = msgspec.json.decode(event.data, type=TenantSuspended)
            await repo.tenant_suspended(suspended.tenant_id, suspended.suspended_at)

    return apply_tenant_event


async def authorize(
    db: Database,
    principal: Principal,
    action: Action,
    tenant_id: uuid.UUID,
    project_id: uuid.UUID,
    *,
    launch: bool = False,
) -> None:
    """The one check of every route under /tenants/{t}/projects/{p}: 404 for another tenant
    or project and for a project iam did not create in this tenant (whatever the role, the
    operator's included), 403 for a role that does not allow `action`; a launch in a
    suspended tenant is refused (403)."""
    principal.require_tenant(tenant_id)
    principal.require_project(project_id)  # a service account: its one project
    project_roles = principal.project_roles.get(project_id, frozenset())
    if not principal.is_operator and not reaches(principal.roles, project_roles):
        raise NotFound("no such resource")
    async with db.unit_of_work() as uow:
        scope = await ProjectRepository(uow).scope(tenant_id, project_id)
    if scope is None:
        raise NotFound(f"project {project_id} not found in this tenant")
    if not principal.is_operator and not allows(action, principal.roles, project_roles):
        raise Forbidden(f"your role does not allow {action.value} in this project")
    if launch and scope["tenant_status"] == "suspended":
        raise TenantSuspendedProblem(f"tenant {tenant_id} is suspended: it launches nothing new")
