"""appplatform's HTTP routes (behind the gateway at /v1/apps). The catalog answers any
signed-in caller; every route under /tenants/{t}/projects/{p} makes one call,
`app.access.authorize`, with its permission (`workload.read` or `workload.manage`,
domain/access.py): another tenant, another project or a project appplatform has not
projected from iam answers 404, a lower role 403, no token 401."""

from __future__ import annotations

from typing import Annotated

from litestar import get
from litestar.params import Parameter

from appplatform.api.schemas import CatalogPage, Channel, Namespace
from appplatform.app.catalog import list_catalog
from platformkit.auth import Principal
from platformkit.db import Database


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


ROUTES = [catalog]
