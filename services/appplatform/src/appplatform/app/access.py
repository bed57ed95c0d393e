"""The one authorization call of every route under /tenants/{t}/projects/{p}: the caller's
scope (domain.access), the project known in that tenant (appplatform's projection of iam's
projects), then the role. A project iam has just created may not be projected yet for a
moment: it answers 404 until it is."""

from __future__ import annotations

import uuid

from appplatform.domain.access import Action, allows, reaches
from appplatform.store import repository as repo
from platformkit.auth import Principal
from platformkit.db import Database
from platformkit.errors import Forbidden, NotFound


async def authorize(
    db: Database,
    principal: Principal,
    action: Action,
    tenant_id: uuid.UUID,
    project_id: uuid.UUID,
) -> None:
    """404 for another tenant or project and for a project iam did not create in this tenant
    (the operator's included), 403 for a role that does not allow `action`."""
    principal.require_tenant(tenant_id)
    principal.require_project(project_id)  # a service account: its one project
    project_roles = principal.project_roles.get(project_id, frozenset())
    if not principal.is_operator and not reaches(principal.roles, project_roles):
        raise NotFound("no such resource")
    async with db.unit_of_work() as uow:
        known = await repo.project_exists(uow, tenant_id, project_id)
    if not known:
        raise NotFound(f"project {project_id} not found in this tenant")
    if not principal.is_operator and not allows(action, principal.roles, project_roles):
        raise Forbidden(f"your role does not allow {action.value} in this project")
