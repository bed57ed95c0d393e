"""appplatform's HTTP routes (behind the gateway at /v1/apps). The catalog answers any
signed-in caller; every route under /tenants/{t}/projects/{p} makes one call,
`app.access.authorize`, with its permission (`workload.read` or `workload.manage`,
domain/access.py): another tenant, another project or a project appplatform has not
projected from iam answers 404, a lower role 403, no token 401."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Response, get, patch, post
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from appplatform.app.access import authorize
from appplatform.app.catalog import list_catalog
from appplatform.app.instances import (
    Launch,
    change_instance,
    get_instance,
    launch,
    list_instances,
    stop_instance,
)
from appplatform.app.schemas import (
    CatalogPage,
    Channel,
    InstanceCreate,
    InstanceOut,
    InstancePage,
    InstancePatch,
    Namespace,
)
from appplatform.domain.access import Action
from platformkit.auth import Principal
from platformkit.db import Database
from platformkit.errors import PROBLEM_JSON, Problem
from platformkit.http import respond
from platformkit.idempotency import check_key


@get("/v1/apps/catalog", operation_id="listCatalog", tags=["catalog"])
async def catalog(
    db: Database,
    principal: Principal,
    q: Annotated[str | None, Parameter(max_length=200)] = None,
    channel: Channel | None = None,
    namespace: Namespace | None = None,
) -> CatalogPage:
    """Apps the caller may launch: its tenant's and the platform-public ones (`namespace`
    narrows to one), each with its promoted, unyanked versions per channel, newest first, and
    what their manifests ask of a launcher (ports, resources, env required at launch). `q`
    matches the app's name or description; `channel` keeps the apps promoted there."""
    items = await list_catalog(db, principal.tenant_id, q, channel, namespace)
    return CatalogPage(items=items)


def _wake(state: State) -> Any:
    controller = getattr(state, "controller", None)
    return None if controller is None else controller.wake


def _problem(description: str) -> ResponseSpec:
    return ResponseSpec(
        Problem, description=description, media_type=PROBLEM_JSON, generate_examples=False
    )


class InstanceController(Controller):
    path = "/v1/apps/tenants/{tenant_id:uuid}/projects/{project_id:uuid}"
    tags = ["instances"]

    @post(
        "/apps/{app:str}/instances",
        operation_id="launchInstance",
        status_code=201,
        responses={
            201: ResponseSpec(InstanceOut, description="The instance", generate_examples=False),
            404: _problem("No such project, or no such app the caller's tenant may launch"),
            409: _problem("The project has a live instance of this name"),
            422: _problem(
                "Invalid request: a field named in `errors` (env.X required at launch or"
                " undeclared; version or channel not promoted; resources outside the manifest)"
            ),
        },
    )
    async def create(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        app: str,
        data: InstanceCreate,
        db: Database,
        state: State,
        principal: Principal,
        idempotency_key: Annotated[str | None, Parameter(header="Idempotency-Key")] = None,
    ) -> Response[bytes]:
        """Launch an app (workload.manage): the desired state is recorded (generation 1) and
        the controller asks gpuaas for its replicas. The same Idempotency-Key and body again
        answer the same instance and launch nothing more."""
        await authorize(db, principal, Action.WORKLOAD_MANAGE, tenant_id, project_id)
        reply = await launch(
            db,
            Launch(tenant_id, project_id, app, data, principal.subject, check_key(idempotency_key)),
            _wake(state),
        )
        return respond(reply)

    @get("/instances", operation_id="listInstances")
    async def index(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        db: Database,
        principal: Principal,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
        after: uuid.UUID | None = None,
    ) -> InstancePage:
        await authorize(db, principal, Action.WORKLOAD_READ, tenant_id, project_id)
        items = await list_instances(db, tenant_id, project_id, limit, after)
        return InstancePage(items=items, next_after=items[-1].id if len(items) == limit else None)

    @get("/instances/{instance_id:uuid}", operation_id="getInstance")
    async def retrieve(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        instance_id: uuid.UUID,
        db: Database,
        principal: Principal,
    ) -> InstanceOut:
        """The desired state (spec, generation) and the observed one (status: state,
        conditions with observedGeneration, replicas)."""
        await authorize(db, principal, Action.WORKLOAD_READ, tenant_id, project_id)
        return await get_instance(db, tenant_id, project_id, instance_id)

    @patch("/instances/{instance_id:uuid}", operation_id="changeInstance")
    async def change(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        instance_id: uuid.UUID,
        data: InstancePatch,
        db: Database,
        state: State,
        principal: Principal,
    ) -> InstanceOut:
        """Change replicas, version or env (workload.manage); generation + 1 per change."""
        await authorize(db, principal, Action.WORKLOAD_MANAGE, tenant_id, project_id)
        return await change_instance(db, tenant_id, project_id, instance_id, data, _wake(state))

    @post("/instances/{instance_id:uuid}/stop", operation_id="stopInstance", status_code=202)
    async def stop(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        instance_id: uuid.UUID,
        db: Database,
        state: State,
        principal: Principal,
    ) -> InstanceOut:
        """Stop every replica (workload.manage); idempotent."""
        await authorize(db, principal, Action.WORKLOAD_MANAGE, tenant_id, project_id)
        return await stop_instance(db, tenant_id, project_id, instance_id, _wake(state))


ROUTES = [catalog, InstanceController]
