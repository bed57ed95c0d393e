"""Every iam route x {anonymous, expired token, another tenant's admin, a lower role, a
service account of another project} -> 401/403/404, never 2xx.

The routes come from iam's OpenAPI document, and each route's required action from its
handler (`opt["action"]`), so a new route is covered without editing this test; a new
route that declares no action, or a new public route, fails it.
"""

import datetime as dt
import re
import uuid

import pytest

from iam.api.authorization import PUBLIC
from iam.domain.permissions import ROLES, Action, allows
from iam.domain.tokens import Subject, access_claims

from .conftest import access, add_member, bearer, email, sign_up

pytestmark = pytest.mark.integration

# Public by design (a security decision: adding one means editing this list on purpose).
PUBLIC_OPERATIONS = {
    "healthz",
    "readyz",
    "version",
    "signUp",
    "register",
    "verifyEmail",
    "acceptInvitation",
    "issueToken",
    "jwks",
    "openidConfiguration",
}
REFUSED = {401, 403, 404}


def _routes(app):
    handlers = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            handlers[handler.operation_id] = handler
    for path, item in app.openapi_schema.paths.items():
        for method in ("get", "post", "put", "patch", "delete"):
            operation = getattr(item, method)
            if operation is not None:
                yield method.upper(), path, operation.operation_id, handlers[operation.operation_id]


@pytest.fixture(scope="module")
async def world(client):
    """A victim tenant with every role, a project, a second project with a service account,
    and another tenant with its own admin."""
    victim = await sign_up(client)
    tenant_id, project_id = victim["tenant"]["id"], victim["project"]["id"]
    owner = await access(client, victim["email"], mfa=True)
    roles = {
        role: await access(client, await add_member(client, owner, tenant_id, role))
        for role in ROLES
        if role != "owner"
    }
    other_project = (
        await client.post(
            f"/v1/iam/tenants/{tenant_id}/projects",
            json={"name": "B", "slug": "b-project"},
            headers=bearer(owner),
        )
    ).json()
    # a user whose only role is in the other project
    roles["viewer-of-other-project"] = await access(
        client, await add_member(client, owner, tenant_id, "viewer", other_project["id"])
    )
    sa_base = f"/v1/iam/tenants/{tenant_id}/projects"
    victim_sa = (
        await client.post(
            f"{sa_base}/{project_id}/service-accounts",
            json={"name": "victim"},
            headers=bearer(owner),
        )
    ).json()
    victim_key = (
        await client.post(
            f"{sa_base}/{project_id}/service-accounts/{victim_sa['id']}/keys",
            json={},
            headers=bearer(owner),
        )
    ).json()
    foreign_sa = (
        await client.post(
            f"{sa_base}/{other_project['id']}/service-accounts",
            json={"name": "elsewhere", "role": "admin"},
            headers=bearer(owner),
        )
    ).json()
    foreign_key = (
        await client.post(
            f"{sa_base}/{other_project['id']}/service-accounts/{foreign_sa['id']}/keys",
            json={},
            headers=bearer(owner),
        )
    ).json()
    sa_token = (
        await client.post(
            "/v1/iam/token",
            data={"grant_type": "client_credentials", "client_secret": foreign_key["api_key"]},
        )
    ).json()
    members = (
        await client.get(f"/v1/iam/tenants/{tenant_id}/members", headers=bearer(owner))
    ).json()
    pending = (
        await client.post(
            f"/v1/iam/tenants/{tenant_id}/members",
            json={"email": email(), "role": "viewer"},
            headers=bearer(owner),
        )
    ).json()
    stranger = await sign_up(client)
    stranger_owner = await access(client, stranger["email"], mfa=True)
    stranger_admin = await access(
        client, await add_member(client, stranger_owner, stranger["tenant"]["id"], "admin")
    )
    # An owner's token, expired a minute ago, signed with iam's real key.
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    subject = Subject(
        uuid.UUID(victim["user"]["id"]),
        "user",
        uuid.UUID(tenant_id),
        frozenset({"owner"}),
        {},
        ("pwd",),
        issued,
    )
    settings = client.app.state.settings
    expired = await client.app.state.iam.keys.sign(
        access_claims(
            subject,
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            jti=uuid.uuid4().hex,
            issued_at=issued,
        )
    )
    return {
        "params": {
            "tenant_id": tenant_id,
            "project_id": project_id,
            "service_account_id": victim_sa["id"],
            "key_id": victim_key["key"]["id"],
            "membership_id": next(m["id"] for m in members if m["role"] == "viewer"),
            "invitation_id": pending["id"],
        },
        "owner": owner,
        "roles": roles,
        "expired": expired,
        "stranger_admin": stranger_admin,
        "foreign_service_account": sa_token["access_token"],
    }


def _path(template: str, params: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: params[m.group(1)], template)


def _lower_roles(action: Action, roles: dict[str, str]) -> list[str]:
    """Callers of the victim tenant whose tenant role does not allow the action (and the
    user whose only role is in another project)."""
    return [
        name
        for name in roles
        if name == "viewer-of-other-project" or not allows(action, frozenset({name}))
    ]


async def test_every_route_refuses_every_outsider(client, world):
    checked = 0
    for method, template, operation_id, handler in _routes(client.app):
        action = handler.opt.get("action")
        if action == PUBLIC:
            assert operation_id in PUBLIC_OPERATIONS, f"{operation_id} became public"
            continue
        if operation_id in PUBLIC_OPERATIONS and action is None:
            continue  # the kit's health routes
        assert isinstance(action, Action), f"{operation_id} declares no permission"
        path = _path(template, world["params"])
        callers = {"anonymous": None, "expired": world["expired"]}
        if action != Action.AUTHENTICATED:
            callers["another tenant's admin"] = world["stranger_admin"]
            callers["service account of another project"] = world["foreign_service_account"]
            for role in _lower_roles(action, world["roles"]):
                callers[f"role {role}"] = world["roles"][role]
        for who, credential in callers.items():
            headers = bearer(credential) if credential else {}
            response = await client.request(method, path, headers=headers)
            assert response.status_code in REFUSED, (
                f"{method} {template} as {who}: {response.status_code} {response.text[:200]}"
            )
            checked += 1
    assert checked > 60


async def test_the_matrix_paths_are_real(client, world):
    """The owner reads every GET route of the matrix: the refusals above are not 404s of
    mistyped paths."""
    for method, template, operation_id, handler in _routes(client.app):
        action = handler.opt.get("action")
        if method != "GET" or action in (PUBLIC, None, Action.OPERATE):
            continue
        response = await client.get(
            _path(template, world["params"]), headers=bearer(world["owner"])
        )
        assert response.status_code == 200, f"{operation_id}: {response.status_code}"
