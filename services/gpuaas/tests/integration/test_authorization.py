"""Who may touch which allocations, on the in-process gpuaas app (real PostgreSQL): the
probes of issue 10. Each caller is a principal as iam mints it (docs/iam.md, Tokens): a user
with tenant roles and/or project roles, a service account with one project role in its one
project and no tenant role, the operator token. The projects are gpuaas's projection of
iam.project.v1, fed here through the projection's own handler (test_projection.py feeds
it through Kafka)."""

import dataclasses
import datetime as dt
import uuid

import pytest
from litestar.testing import AsyncTestClient

from gpuaas.app.projects import tenant_handler
from gpuaas.bootstrap import DEFINITION
from gpucloud_contracts.events.iam import TenantSuspended
from platformkit.auth import Principal
from platformkit.http import build_service_app
from platformkit.settings import ServiceSettings

from .conftest import add_node, iam_event, new_project, project_created

pytestmark = pytest.mark.integration
OPERATOR = "test-operator-token"
LAUNCH = {"sku": "h100-80gb", "mig_profile": "1g.10gb"}


class Tokens:
    """Stands in for iam's verifier: each token names a principal the test registered."""

    def __init__(self) -> None:
        self.principals: dict[str, Principal] = {}

    def user(self, tenant, roles=(), projects=None) -> dict[str, str]:
        return self._add(
            Principal(
                subject=str(uuid.uuid4()),
                kind="user",
                tenant_id=tenant,
                roles=frozenset(roles),
                project_roles={p: frozenset({r}) for p, r in (projects or {}).items()},
            )
        )

    def service_account(self, tenant, project, role="member") -> dict[str, str]:
        return self._add(
            Principal(
                subject=str(uuid.uuid4()),
                kind="service_account",
                tenant_id=tenant,
                project_ids=frozenset({project}),
                project_roles={project: frozenset({role})},
                api_key_id=str(uuid.uuid4()),
            )
        )

    def _add(self, principal: Principal) -> dict[str, str]:
        token = f"t-{uuid.uuid4().hex}"
        self.principals[token] = principal
        return {"Authorization": f"Bearer {token}"}

    async def verify(self, token: str) -> Principal:
        from platformkit.errors import Unauthorized

        if token not in self.principals:
            raise Unauthorized("unknown token")
        return self.principals[token]


@pytest.fixture
async def client(infra, gpuaas_url):
    settings = ServiceSettings(
        service_name=f"gpuaas-test-{uuid.uuid4().hex[:8]}",
        database_url=gpuaas_url,
        kafka=infra.kafka,
        operator_token=OPERATOR,
        heartbeat_interval_s=0,
        outbox_poll_interval_s=0.2,
    )
    definition = dataclasses.replace(DEFINITION, subscriptions=())
    async with AsyncTestClient(build_service_app(definition, settings)) as c:
        c.app.state.token_verifier = Tokens()
        yield c


@dataclasses.dataclass
class World:
    client: AsyncTestClient
    tokens: Tokens
    tenant: uuid.UUID
    project: uuid.UUID
    other_project: uuid.UUID  # another project of the same tenant
    stranger: uuid.UUID  # another tenant
    stranger_project: uuid.UUID

    def base(self, project=None, tenant=None) -> str:
        return (
            f"/v1/gpu/tenants/{tenant or self.tenant}/projects/{project or self.project}"
            "/allocations"
        )

    async def launch(self, headers, project=None, tenant=None):
        return await self.client.post(self.base(project, tenant), json=LAUNCH, headers=headers)


@pytest.fixture
async def world(client, db) -> World:
    await add_node(db, gpus=2)
    tenant, project = await new_project(db)
    other_project = uuid.uuid4()
    await project_created(db, tenant, other_project)
    stranger, stranger_project = await new_project(db)
    return World(
        client,
        client.app.state.token_verifier,
        tenant,
        project,
        other_project,
        stranger,
        stranger_project,
    )


def _refused(response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == status


async def _allocations(db, project) -> int:
    async with db.unit_of_work() as uow:
        row = await uow.fetch_one(
            "SELECT count(*) AS n FROM allocations WHERE project_id = :p", {"p": project}
        )
    return int(row["n"])


async def test_no_token_is_401(world):
    _refused(await world.launch({}), 401)
    _refused(await world.client.get(world.base()), 401)


async def test_another_tenants_caller_gets_404_everywhere(world):
    stranger_owner = world.tokens.user(world.stranger, ["owner"])
    _refused(await world.launch(stranger_owner), 404)
    _refused(await world.client.get(world.base(), headers=stranger_owner), 404)
    quota = world.base().removesuffix("/allocations") + "/quota"
    _refused(await world.client.get(quota, headers=stranger_owner), 404)


async def test_another_tenants_project_is_impossible_whatever_the_role(world, db):
    """A tenant's owner (and the operator) naming another tenant's project under its own
    tenant: 404, and no allocation lands there."""
    owner = world.tokens.user(world.tenant, ["owner"])
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    for caller in (owner, operator):
        _refused(await world.launch(caller, project=world.stranger_project), 404)
        listed = await world.client.get(world.base(world.stranger_project), headers=caller)
        _refused(listed, 404)
    assert await _allocations(db, world.stranger_project) == 0


async def test_an_invented_project_is_impossible_whatever_the_role(world, db):
    invented = uuid.uuid4()
    owner = world.tokens.user(world.tenant, ["owner"])
    viewer = world.tokens.user(world.tenant, ["viewer"])
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    for caller in (owner, viewer, operator):
        refused = await world.launch(caller, project=invented)
        _refused(refused, 404)
        assert "not found" in refused.json()["detail"]
    quota = world.base(invented).removesuffix("/allocations") + "/quota"
    _refused(await world.client.get(quota, headers=owner), 404)
    put = await world.client.put(quota, json={"max_compute_slices": 7}, headers=operator)
    _refused(put, 404)
    assert await _allocations(db, invented) == 0


async def test_a_viewer_reads_but_cannot_launch_or_release(world):
    owner = world.tokens.user(world.tenant, ["owner"])
    viewer = world.tokens.user(world.tenant, ["viewer"])
    launched = await world.launch(owner)
    assert launched.status_code == 201, launched.text
    allocation = launched.json()["id"]
    assert (await world.client.get(world.base(), headers=viewer)).status_code == 200
    got = await world.client.get(f"{world.base()}/{allocation}", headers=viewer)
    assert got.status_code == 200
    quota = world.base().removesuffix("/allocations") + "/quota"
    assert (await world.client.get(quota, headers=viewer)).status_code == 200
    _refused(await world.launch(viewer), 403)
    release = await world.client.post(f"{world.base()}/{allocation}/release", headers=viewer)
    _refused(release, 403)


async def test_the_billing_role_neither_launches_nor_reads_workloads(world):
    billing = world.tokens.user(world.tenant, ["billing"])
    _refused(await world.launch(billing), 403)
    _refused(await world.client.get(world.base(), headers=billing), 403)


async def test_a_project_role_holds_in_its_project_only(world):
    member = world.tokens.user(world.tenant, projects={world.project: "member"})
    admin = world.tokens.user(world.tenant, projects={world.project: "admin"})
    viewer = world.tokens.user(world.tenant, projects={world.project: "viewer"})
    for caller in (member, admin):
        launched = await world.launch(caller)
        assert launched.status_code == 201, launched.text
        released = await world.client.post(
            f"{world.base()}/{launched.json()['id']}/release", headers=caller
        )
        assert released.status_code == 202, released.text
        # another project of the same tenant: as if it did not exist
        _refused(await world.launch(caller, project=world.other_project), 404)
        other = await world.client.get(world.base(world.other_project), headers=caller)
        _refused(other, 404)
    assert (await world.client.get(world.base(), headers=viewer)).status_code == 200
    _refused(await world.launch(viewer), 403)
    _refused(await world.client.get(world.base(world.other_project), headers=viewer), 404)


async def test_a_service_account_launches_in_its_project_only(world):
    account = world.tokens.service_account(world.tenant, world.project)
    launched = await world.launch(account)
    assert launched.status_code == 201, launched.text
    allocation = launched.json()["id"]
    assert (await world.client.get(world.base(), headers=account)).json()["items"][0]["id"] == (
        allocation
    )
    released = await world.client.post(f"{world.base()}/{allocation}/release", headers=account)
    assert released.status_code == 202, released.text
    _refused(await world.launch(account, project=world.other_project), 404)
    _refused(await world.launch(account, project=uuid.uuid4()), 404)
    _refused(await world.launch(account, tenant=world.stranger), 404)
    reader = world.tokens.service_account(world.tenant, world.project, role="viewer")
    assert (await world.client.get(world.base(), headers=reader)).status_code == 200
    _refused(await world.launch(reader), 403)


async def test_a_suspended_tenant_launches_nothing_new(world, db):
    owner = world.tokens.user(world.tenant, ["owner"])
    launched = await world.launch(owner)
    assert launched.status_code == 201, launched.text
    payload = TenantSuspended(
        tenant_id=world.tenant, reason="abuse", suspended_at=dt.datetime.now(dt.UTC)
    )
    async with db.unit_of_work() as uow:
        event = iam_event("iam.tenant.suspended", world.tenant, payload, world.tenant)
        await tenant_handler()(event, uow)
        await uow.commit()
    refused = await world.launch(owner)
    _refused(refused, 403)
    assert refused.json()["type"].endswith("tenant-suspended")
    released = await world.client.post(
        f"{world.base()}/{launched.json()['id']}/release", headers=owner
    )
    assert released.status_code == 202, released.text


async def test_quota_is_the_tenants_projects(world, db):
    """Usage and quota are counted per (tenant, project)."""
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    owner = world.tokens.user(world.tenant, ["owner"])
    quota = world.base().removesuffix("/allocations") + "/quota"
    put = await world.client.put(quota, json={"max_compute_slices": 1}, headers=operator)
    assert put.status_code == 200, put.text
    assert (await world.launch(owner)).status_code == 201
    over = await world.launch(owner)
    assert over.status_code == 409 and over.json()["type"].endswith("quota-exceeded")
    read = (await world.client.get(quota, headers=owner)).json()
    assert read["max_compute_slices"] == 1 and read["in_use"] == 1
