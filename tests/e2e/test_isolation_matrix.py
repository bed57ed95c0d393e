"""Every operation of every service's committed OpenAPI document, sent through the gateway
as outsiders of a victim tenant, is refused: never 2xx, never 5xx.

The callers: anonymous; a garbage bearer token and the victim owner's own token with its
expiry pushed into the past (a tampered, expired token); another tenant's admin signed in
with MFA; a viewer of the victim tenant; a user who holds only a project role (member) in
another project of the victim tenant; a service account (admin) of that other project. The
path parameters hold the victim's tenant and default project ids and random UUIDs for every
other id, so a refusal cannot come from a foreign resource. Beside the matrix: a viewer
reads no billing, and a project-role-only member and a service account launch in their own
project (and nowhere else), through the gateway.

The operations come from contracts/openapi/*.json (regenerated from the services by
tools/contracts/generate.py), so a new route is covered without editing this test. What
may answer 2xx is spelled out below on purpose: the short list of public operations
(checked: an operation outside it answering 2xx anonymously fails the test), the
self-service operations any signed-in caller may use, the catalog reads (SKUs, prices:
not with the victim's tenant named, for another tenant), and the reads docs/iam.md grants a
viewer of the tenant (VIEWER_READS; billing, members, audit and terminal reads are not
among them). Adding to any of them is a security decision.
"""

import base64
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Person, invite, sign_up
from .conftest import bearer as _bearer
from .conftest import idempotency_key as _key

pytestmark = pytest.mark.e2e

OPENAPI = Path(__file__).resolve().parents[2] / "contracts" / "openapi"
METHODS = ("get", "post", "put", "patch", "delete")

# Public by design: probes, the fleet status page, sign-up and registration (both answer
# "check your email"), the emailed links (verifying an address, accepting an invitation:
# each needs the token mailed to the address), the token endpoint, key discovery, and
# provider webhooks (authenticated by their signature, not a token). Creating a bare tenant
# or a user directly is an operator's (createTenant, createUser).
PUBLIC = {
    "healthz",
    "readyz",
    "version",
    "getStatus",
    "getServiceStatus",  # audit's fleet status: the upstream of the gateway's /v1/status
    "signUp",
    "register",
    "verifyEmail",
    "acceptInvitation",
    "issueToken",
    "jwks",
    "openidConfiguration",
    "sandboxWebhook",
    "stripeWebhook",
    "terminalJwks",  # terminal-gateway's session-token keys, which node agents fetch
    "terminalSshEndpoint",  # where the SSH endpoint is and its public host key
    "getAuditLogKey",  # the fleet audit log's verifier key: witnesses and verifiers need it
    "appProxyJwks",  # appplatform's proxy-token keys, which node agents fetch
}
# Any valid token may call these: they act on the caller itself, never on a tenant.
SELF_SERVICE = {
    "whoAmI",
    "getMfaStatus",
    "enrollTotp",
    "activateTotp",
    "listSshKeys",
    "addSshKey",
    "revokeSshKey",
}
# The catalog any valid token may read: GPU SKUs, the price book (public prices, plus the
# overrides of the caller's own tenant; the query names the victim tenant here), and the
# platform-public apps of registry.
CATALOG = {
    "listSkus",
    "listPrices",
    # the fleet audit log's latest signed checkpoint (size and root hash: no tenant's data)
    "getLatestAuditCheckpoint",
    # the same checkpoint as registry witnessed it, for verifiers to compare the two
    "getWitnessedCheckpoint",
    # registry's platform-public namespace (docs/registry.md): apps every tenant may launch
    "listPublicApps",
    "getPublicApp",
    "listPublicVersions",
    "getPublicVersion",
    "getPublicBlob",
    # appplatform's catalog: the caller's own tenant's apps and the platform-public ones
    "listCatalog",
}
# What docs/iam.md lets a tenant viewer read: tenant.read, project.list, project.read,
# workload.read, registry.read. Nothing else may answer a viewer 2xx.
VIEWER_READS = {
    "getTenant",
    "listProjects",
    "getProject",
    "listAllocations",
    "getAllocation",
    "getQuota",
    "getLaunchPolicy",  # workload.read: the channel the project's launches require
    "listTrustedKeys",
    "listPromotionPolicies",
    "listApps",
    "getApp",
    "getBlob",
    "listVersions",
    "getVersion",
    "getManifest",
    "listInstances",  # workload.read: the project's app instances
    "getInstance",
}
VIEWER = "viewer of the victim tenant"
PROJECT_MEMBER = "member of another project only"
# A refusal, or a body validated before authorization (never a 2xx, never a 5xx).
REFUSED = {401, 403, 404}
VALIDATION = {400, 405, 409, 422}
PASSWORD = "matrix-" + uuid.uuid4().hex + "Aa1!"


def _example(spec: dict[str, Any], schema: dict[str, Any], known: dict[str, str]) -> Any:
    """A plausible value of `schema` (required properties only; the victim's ids where a
    property is named like one), so a body validated before authorization still reaches
    the authorization check."""
    while "$ref" in schema:
        target: Any = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = target
    for choice in ("oneOf", "anyOf"):
        if choice in schema:
            options = [o for o in schema[choice] if o.get("type") != "null"]
            return _example(spec, options[0], known) if options else None
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        return {
            name: known.get(name) or _example(spec, properties[name], known)
            for name in schema.get("required", [])
            if name in properties
        }
    if kind == "array":
        return [_example(spec, schema.get("items", {}), known)]
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    formats = {"uuid": str(uuid.uuid4()), "date-time": "2026-01-01T00:00:00+00:00"}
    if schema.get("format") in formats:
        return formats[schema["format"]]
    if schema.get("format") == "email":
        return "matrix@example.test"
    return "x" * max(1, schema.get("minLength", 1))


def _operations() -> Iterator[tuple[str, str, str, str, list[dict[str, Any]], Any]]:
    """(service, METHOD, path template, operationId, parameters, a function of the known
    ids giving a JSON body or None) for every committed operation."""
    for document in sorted(OPENAPI.glob("*.json")):
        spec = json.loads(document.read_text())
        for template, item in spec["paths"].items():
            for method in METHODS:
                if method in item:
                    operation = item[method]
                    parameters = item.get("parameters", []) + operation.get("parameters", [])
                    content = operation.get("requestBody", {}).get("content", {})
                    schema = content.get("application/json", {}).get("schema")
                    yield (
                        document.stem,
                        method.upper(),
                        template,
                        operation["operationId"],
                        parameters,
                        (
                            None
                            if schema is None
                            else lambda known, spec=spec, schema=schema: _example(
                                spec, schema, known
                            )
                        ),
                    )


def _sign_up(gateway: httpx.Client) -> tuple[dict[str, Any], Person]:
    return sign_up(gateway, "matrix", PASSWORD)


def _member(
    gateway: httpx.Client, owner_token: str, tenant_id: str, role: str, project: str = ""
) -> Person:
    """A new user granted `role` in the tenant, or only in `project` of it (invited, and
    accepted with the token mailed to them)."""
    person = Person("matrix", PASSWORD)
    scope = f"/projects/{project}" if project else ""
    invite(
        gateway, f"/v1/iam/tenants/{tenant_id}{scope}", person, role,
        _bearer(owner_token) | _key(),
    )  # fmt: skip
    return person


def _expired(token: str) -> str:
    """The token with `exp` an hour in the past and its original signature."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["exp"] = int(time.time()) - 3600
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.fixture(scope="module")
def world(fleet) -> dict[str, Any]:
    with fleet.client() as gateway:
        victim, owner = _sign_up(gateway)
        tenant_id, project_id = victim["tenant"]["id"], victim["project"]["id"]
        owner_token = owner.enroll(gateway, tenant_id)
        viewer = _member(gateway, owner_token, tenant_id, "viewer")

        projects = f"/v1/iam/tenants/{tenant_id}/projects"
        other = gateway.post(
            projects,
            json={"name": "Other", "slug": f"other-{uuid.uuid4().hex[:8]}"},
            headers=_bearer(owner_token) | _key(),
        )
        assert other.status_code == 201, other.text
        other_id = other.json()["id"]
        project_member = _member(gateway, owner_token, tenant_id, "member", other_id)
        accounts = f"{projects}/{other_id}/service-accounts"
        account = gateway.post(
            accounts,
            json={"name": "elsewhere", "role": "admin"},
            headers=_bearer(owner_token) | _key(),
        )
        assert account.status_code == 201, account.text
        key = gateway.post(
            f"{accounts}/{account.json()['id']}/keys",
            json={},
            headers=_bearer(owner_token) | _key(),
        )
        assert key.status_code == 201, key.text
        minted = gateway.post(
            "/v1/iam/token",
            data={"grant_type": "client_credentials", "client_secret": key.json()["api_key"]},
        )
        assert minted.status_code == 200, minted.text

        stranger, stranger_owner = _sign_up(gateway)
        stranger_tenant, stranger_project = stranger["tenant"]["id"], stranger["project"]["id"]
        stranger_owner_token = stranger_owner.enroll(gateway, stranger_tenant)
        admin = _member(gateway, stranger_owner_token, stranger_tenant, "admin")
        return {
            "tenant_id": tenant_id,
            "project_id": project_id,
            "other_project_id": other_id,
            "stranger_project_id": stranger_project,
            "owner": _bearer(owner_token),
            "callers": {
                "anonymous": {},
                "garbage token": _bearer("not-a-token"),
                "expired token": _bearer(_expired(owner_token)),
                "another tenant's admin (MFA)": _bearer(admin.enroll(gateway, stranger_tenant)),
                VIEWER: _bearer(viewer.sign_in(gateway, tenant_id)),
                PROJECT_MEMBER: _bearer(project_member.sign_in(gateway, tenant_id)),
                "service account of another project": _bearer(minted.json()["access_token"]),
            },
        }


def _request(
    template: str, parameters: list[dict[str, Any]], body: Any, world: dict[str, Any]
) -> tuple[str, dict[str, str], Any]:
    """The path with the victim's ids (random UUIDs for other ids), and a query naming the
    victim's tenant/project wherever the operation takes one (plus its required ones)."""
    known = {"tenant_id": world["tenant_id"], "project_id": world["project_id"]}
    path = re.sub(r"\{(\w+)\}", lambda m: known.get(m.group(1), str(uuid.uuid4())), template)
    query = {
        p["name"]: known.get(p["name"], str(uuid.uuid4()))
        for p in parameters
        if p.get("in") == "query" and (p["name"] in known or p.get("required"))
    }
    return path, query, None if body is None else body(known)


def _may_succeed(
    who: str, method: str, template: str, operation_id: str, names_victim: bool
) -> bool:
    """Whether a 2xx is legitimate for this caller (see the module docstring)."""
    if who in ("anonymous", "garbage token", "expired token"):
        return False
    if operation_id in SELF_SERVICE:
        return True
    if method == "GET" and operation_id in CATALOG:
        # another tenant may read the catalog, but not with the victim's tenant named
        return who != "another tenant's admin (MFA)" or not names_victim
    if who == VIEWER:
        # the reads docs/iam.md grants a viewer, and nothing else
        return method == "GET" and operation_id in VIEWER_READS
    return False


def test_the_documents_hold_the_fleet():
    operations = list(_operations())
    services = {operation[0] for operation in operations}
    assert {"iam", "billing", "gpuaas", "audit", "gateway"} <= services
    ids = {operation[3] for operation in operations}
    # the explicit lists name real operations: a stale name would silently widen them
    assert (PUBLIC | SELF_SERVICE | CATALOG | VIEWER_READS) <= ids


def test_every_operation_refuses_every_outsider(fleet, world):
    failures, checked = [], 0
    with fleet.client() as gateway:
        for service, method, template, operation_id, parameters, body in _operations():
            if operation_id in PUBLIC:
                continue
            path, query, json_body = _request(template, parameters, body, world)
            for who, headers in world["callers"].items():
                response = gateway.request(
                    method, path, params=query, json=json_body, headers=headers | _key()
                )
                checked += 1
                status = response.status_code
                allowed = REFUSED | VALIDATION
                if _may_succeed(who, method, template, operation_id, "tenant_id" in query):
                    allowed = allowed | set(range(200, 300))
                if status not in allowed:
                    failures.append(
                        f"{service} {method} {template} ({operation_id}) as {who}: "
                        f"{status} {response.text[:160]}"
                    )
    assert not failures, "\n".join(failures)
    assert checked > 300


def test_the_matrix_paths_are_real(fleet, world):
    """The victim's owner reads every GET of its tenant whose path holds only the tenant
    and project ids: the refusals above are not 404s of paths the gateway does not route."""
    read = 0
    with fleet.client() as gateway:
        for _, method, template, operation_id, parameters, body in _operations():
            names = set(re.findall(r"\{(\w+)\}", template))
            if method != "GET" or "tenant_id" not in names or names - {"tenant_id", "project_id"}:
                continue
            path, query, _ = _request(template, parameters, body, world)
            response = gateway.get(path, params=query, headers=world["owner"])
            assert response.status_code == 200, f"{operation_id}: {response.status_code}"
            read += 1
    assert read >= 8


def test_a_viewer_reads_no_billing(fleet, world):
    """billing.read is owner, admin and billing (docs/iam.md): a viewer of the tenant gets
    403 on every billing read of its own tenant."""
    viewer = world["callers"][VIEWER]
    with fleet.client() as gateway:
        for path in ("balance", "ledger", "usage", "statements/2026-01"):
            r = gateway.get(f"/v1/billing/tenants/{world['tenant_id']}/{path}", headers=viewer)
            assert r.status_code == 403, f"{path}: {r.status_code} {r.text[:200]}"
            assert r.headers["content-type"].startswith("application/problem+json")


def _launch(gateway: httpx.Client, world: dict[str, Any], project: str, headers) -> httpx.Response:
    """POST a MIG slice into `project`. In the caller's own project a 404 (gpuaas projects
    iam's new project from its event a moment later) and a 402 (gpuaas has not seen the
    top-up yet; a new key each time) are retried briefly."""
    path = f"/v1/gpu/tenants/{world['tenant_id']}/projects/{project}/allocations"
    body = {"sku": "h100-80gb", "mig_profile": "1g.10gb"}
    deadline = time.monotonic() + 30
    while True:
        r = gateway.post(path, json=body, headers=headers | _key())
        if r.status_code not in (402, 404) or project != world["other_project_id"]:
            return r
        if time.monotonic() > deadline:
            return r
        time.sleep(0.3)


def _top_up(gateway: httpx.Client, fleet, tenant_id: str) -> None:
    """An operator credit (billing opens the tenant from iam's event: 404 retried)."""
    key = _key()
    deadline = time.monotonic() + 30
    while True:
        r = gateway.post(
            f"/v1/billing/tenants/{tenant_id}/top-ups",
            json={"amount_micros": 50_000_000},
            headers=fleet.operator | key,
        )
        if r.status_code == 201 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert r.status_code == 201, r.text


def test_project_roles_and_service_accounts_launch_in_their_project_only(fleet, world):
    """A user holding only a project role (member) and a service account (admin of that
    project, an API key's token) launch and release in their project; in the tenant's other
    project they get 404, as if it did not exist; a tenant viewer may not launch (403)."""
    callers = world["callers"]
    mine, theirs = world["other_project_id"], world["project_id"]
    with fleet.client() as gateway:
        _top_up(gateway, fleet, world["tenant_id"])
        for who in (PROJECT_MEMBER, "service account of another project"):
            launched = _launch(gateway, world, mine, callers[who])
            assert launched.status_code == 201, f"{who}: {launched.text[:300]}"
            allocation = launched.json()["id"]
            base = f"/v1/gpu/tenants/{world['tenant_id']}/projects/{mine}/allocations"
            listed = gateway.get(base, headers=callers[who])
            assert allocation in [a["id"] for a in listed.json()["items"]]
            released = gateway.post(f"{base}/{allocation}/release", headers=callers[who])
            assert released.status_code == 202, f"{who}: {released.text[:300]}"
            elsewhere = _launch(gateway, world, theirs, callers[who])
            assert elsewhere.status_code == 404, f"{who}: {elsewhere.text[:300]}"
        refused = _launch(gateway, world, theirs, callers[VIEWER])
        assert refused.status_code == 403, refused.text[:300]
        # the owner naming an invented project, or another tenant's, under its own tenant
        for project in (str(uuid.uuid4()), world["stranger_project_id"]):
            refused = _launch(gateway, world, project, world["owner"])
            assert refused.status_code == 404, refused.text[:300]
