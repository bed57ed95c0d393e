"""Every registry route refuses the callers it must, before touching anything: no token
(401), another tenant (404), a service account of another project (404), a role too low
(403), a key change without a recent second factor (401) or by a service account (403). The
routes come from the app's own OpenAPI document, so a new route is covered without editing
this test; a route without a declared action fails it (the guard is closed by default)."""

from __future__ import annotations

import re
import uuid

import pytest

from registry.domain.permissions import PERMISSIONS, STEP_UP, Action

from .conftest import token

pytestmark = pytest.mark.integration

METHODS = ("get", "post", "put", "delete", "patch")


def _operations(app):
    handlers = {
        h.operation_id: h
        for route in app.routes
        for h in getattr(route, "route_handlers", ())
        if getattr(h, "operation_id", None)
    }
    for path, item in app.openapi_schema.to_schema()["paths"].items():
        for method in METHODS:
            if method in item and path.startswith("/v1/registry/"):
                operation_id = item[method]["operationId"]
                yield method.upper(), path, operation_id, handlers[operation_id].opt.get("action")


def _path(template: str, tenant: uuid.UUID, project: uuid.UUID) -> str:
    known = {"tenant_id": str(tenant), "project_id": str(project), "channel": "dev"}

    def value(name: str) -> str:
        if name in known:
            return known[name]
        return str(uuid.uuid4()) if name.endswith("_id") else "x" + uuid.uuid4().hex[:8]

    return re.sub(r"\{(\w+)\}", lambda m: value(m.group(1)), template)


def _lowest_role_refused(action: Action) -> str | None:
    for role in ("viewer", "member", "admin"):
        if role not in PERMISSIONS[action].tenant:
            return role
    return None


async def test_every_route_declares_an_action(client):
    operations = list(_operations(client.app))
    assert len(operations) >= 20
    assert all(isinstance(action, Action) for *_, action in operations), operations


async def test_every_route_refuses_outsiders(client):
    victim, project, other_project = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    callers = {
        "no token": ({}, 401),
        "another tenant's owner": (token(uuid.uuid4(), "owner", mfa=True), 404),
        "service account of another project": (
            token(victim, project=other_project, project_role="admin", service_account=True),
            404,
        ),
    }
    failures = []
    for method, template, operation_id, action in _operations(client.app):
        path = _path(template, victim, project)
        for who, (headers, expected) in callers.items():
            if action in (Action.CATALOG, Action.WITNESS) and who != "no token":
                continue  # the public catalog and the witnessed checkpoint: any signed-in caller
            if "{tenant_id}" not in template and who != "no token":
                expected = 403  # fleet-wide routes name no tenant: only operators pass
            if who.startswith("service account") and "{project_id}" not in template:
                expected = 403  # tenant-level routes: a project-bound account has no tenant role
            response = await client.request(method, path, headers=headers, json={})
            if response.status_code != expected:
                failures.append(f"{operation_id} as {who}: {response.status_code} != {expected}")
    assert not failures, "\n".join(failures)


async def test_lower_roles_and_missing_step_up_are_refused(client):
    tenant, project = uuid.uuid4(), uuid.uuid4()
    failures = []
    for method, template, operation_id, action in _operations(client.app):
        if action == Action.CATALOG:
            continue
        path = _path(template, tenant, project)
        role = _lowest_role_refused(action)
        if role is not None:
            response = await client.request(
                method, path, headers=token(tenant, role, mfa=True), json={}
            )
            if response.status_code != 403:
                failures.append(f"{operation_id} as {role}: {response.status_code}")
        if action in STEP_UP:
            no_mfa = await client.request(method, path, headers=token(tenant, "owner"), json={})
            if (
                no_mfa.status_code != 401
                or "insufficient_user_authentication"
                not in no_mfa.headers.get("www-authenticate", "")
            ):
                failures.append(f"{operation_id} without step-up: {no_mfa.status_code}")
    assert not failures, "\n".join(failures)


async def test_a_ci_service_account_publishes_and_promotes_its_projects_apps(client, tmp_path):
    from gpucloud_trust.keys import SigningKey

    from .conftest import build_bundle
    from .helpers import Publisher

    p = Publisher(client)
    ci = token(p.tenant, project=p.project, project_role="admin", service_account=True)
    member_ci = token(p.tenant, project=p.project, project_role="member", service_account=True)
    signer = SigningKey.generate()
    await p.create_app(headers=ci)
    built = build_bundle(tmp_path)
    await p.upload(built, headers=ci)
    await p.publish("0.1.0", built, headers=member_ci)
    await p.trust(signer)  # keys are the tenant's: an owner with a second factor adds them
    await p.attach("0.1.0", p.release(built.digest, "0.1.0", signer), headers=ci)
    assert (await p.promote("0.1.0", "dev", headers=member_ci)).status_code == 403
    assert (await p.promote("0.1.0", "dev", headers=ci)).status_code == 201
    add_key = await client.post(
        f"/v1/registry/tenants/{p.tenant}/keys",
        json={"public_key": SigningKey.generate().public.to_base64(), "name": "ci"},
        headers=ci,
    )
    assert add_key.status_code == 403


async def test_apps_are_created_only_in_a_project_iam_made_in_the_tenant(client):
    from .helpers import Publisher, key, project_created

    p = Publisher(client)
    unknown = await client.post(p.base, json={"name": p.app}, headers=p.owner | key())
    assert unknown.status_code == 404 and "project" in unknown.json()["detail"]
    # a project of another tenant is not this tenant's, whatever the path says
    await project_created(client, uuid.uuid4(), p.project)
    elsewhere = await client.post(p.base, json={"name": p.app}, headers=p.owner | key())
    assert elsewhere.status_code == 404
    mine = Publisher(client, tenant=p.tenant)
    await mine.create_app()  # iam created it in this tenant: the app is made
