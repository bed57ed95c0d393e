"""iam's HTTP routes. Sign-up (tenant creation) is public; reading tenants needs an
operator token until tenant-scoped tokens land."""

import uuid
from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from iam.api.schemas import TenantCreate, TenantOut, TenantPage
from iam.app.tenants import CreateTenant, create_tenant, get_tenant, list_tenants
from iam.domain.tenants import Tenant
from platformkit.auth import require_operator
from platformkit.db import Database
from platformkit.errors import PROBLEM_JSON, Problem
from platformkit.idempotency import check_key


def _out(tenant: Tenant) -> TenantOut:
    return TenantOut(
        id=tenant.id,
        name=tenant.name,
        slug=tenant.slug,
        status=tenant.status.value,
        created_at=tenant.created_at,
    )


class TenantController(Controller):
    path = "/v1/iam/tenants"
    tags = ["tenants"]

    @post(
        "/",
        operation_id="createTenant",
        status_code=201,
        responses={
            201: ResponseSpec(
                TenantOut, description="The tenant (or the stored replay)", generate_examples=False
            ),
            409: ResponseSpec(
                Problem, description="Slug taken", media_type=PROBLEM_JSON, generate_examples=False
            ),
        },
    )
    async def create(
        self,
        data: TenantCreate,
        db: Database,
        idempotency_key: Annotated[str | None, Parameter(header="Idempotency-Key")] = None,
    ) -> Response[bytes]:
        status, body = await create_tenant(
            db,
            CreateTenant(data.name, data.slug, check_key(idempotency_key)),
            lambda tenant: msgspec.json.encode(_out(tenant)),
        )
        return Response(body, status_code=status, media_type="application/json")

    @get("/{tenant_id:uuid}", operation_id="getTenant", guards=[require_operator])
    async def retrieve(self, tenant_id: uuid.UUID, db: Database) -> TenantOut:
        return _out(await get_tenant(db, tenant_id))

    @get("/", operation_id="listTenants", guards=[require_operator])
    async def index(
        self,
        db: Database,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
        after: uuid.UUID | None = None,
    ) -> TenantPage:
        tenants = await list_tenants(db, limit, after)
        next_after = tenants[-1].id if len(tenants) == limit else None
        return TenantPage(items=[_out(t) for t in tenants], next_after=next_after)
