"""Evidence records (issue 15 item 5): who may record and read them, refusals first; a record
is immutable, published as audit.evidence.recorded in the same transaction, and a repeated
Idempotency-Key answers the same record (the runtime role's refusals to change one are in
test_runtime_privileges.py). The readback through the gateway, registry's use of
it and its leaf in the audit log are in tests/e2e/test_evidence.py."""

import dataclasses
import hashlib
import uuid

import msgspec
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from audit.bootstrap import DEFINITION
from gpucloud_contracts.events.audit import EvidenceRecorded
from platformkit.auth import Principal
from platformkit.http import build_service_app
from platformkit.settings import ServiceSettings

pytestmark = pytest.mark.integration
OPERATOR = "op-evidence-token"
TENANT, OTHER_TENANT = uuid.uuid4(), uuid.uuid4()
PROJECT, OTHER_PROJECT = uuid.uuid4(), uuid.uuid4()
SUBJECT = "sha256:" + hashlib.sha256(uuid.uuid4().bytes).hexdigest()


def _user(*roles: str, tenant: uuid.UUID = TENANT, projects=None) -> Principal:
    return Principal(
        subject=str(uuid.uuid4()),
        kind="user",
        tenant_id=tenant,
        roles=frozenset(roles),
        project_roles={p: frozenset(r) for p, r in (projects or {}).items()},
    )


# What iam mints: tenant roles for users, project roles for users and service accounts (a
# service account is bound to its one project and holds no tenant role).
CALLERS = {
    "owner": _user("owner"),
    "member": _user("member"),
    "viewer": _user("viewer"),
    "billing": _user("billing"),
    "project-member": _user(projects={PROJECT: {"member"}}),
    "project-viewer": _user(projects={PROJECT: {"viewer"}}),
    "other-project-member": _user(projects={OTHER_PROJECT: {"member"}}),
    "stranger": _user("owner", tenant=OTHER_TENANT),
    "ci": Principal(
        subject=str(uuid.uuid4()),
        kind="service_account",
        tenant_id=TENANT,
        project_ids=frozenset({PROJECT}),
        project_roles={PROJECT: frozenset({"member"})},
    ),
}


class _Tokens:
    async def verify(self, token: str) -> Principal:
        return CALLERS[token]


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {OPERATOR if who == 'operator' else who}"}


@pytest.fixture
async def client(audit_url):
    definition = dataclasses.replace(
        DEFINITION, subscriptions=(), batch_subscriptions=(), jobs=(), kafka=False, relay=False
    )
    settings = ServiceSettings("audit", database_url=audit_url, operator_token=OPERATOR)
    async with AsyncTestClient(build_service_app(definition, settings)) as c:
        c.app.state.token_verifier = _Tokens()
        yield c


def _path(tenant=TENANT, project=PROJECT) -> str:
    return f"/v1/audit/tenants/{tenant}/projects/{project}/evidence"


def _nested(depth: int) -> dict:
    out: dict = {}
    for _ in range(depth):
        out = {"k": out}
    return out


BODY = {
    "kind": "security-scan",
    "subject_digest": SUBJECT,
    "outcome": "pass",
    "content_digest": "sha256:" + "ab" * 32,
    "uri": "https://ci.example.test/scans/42",
    "details": {"scanner": "grype", "critical": 0},
}


async def record(client, who: str, body=None, **path):
    return await client.post(_path(**path), json=body or BODY, headers=auth(who))


class TestRefusals:
    async def test_no_token_is_401(self, client):
        assert (await client.post(_path(), json=BODY)).status_code == 401
        assert (
            await client.get("/v1/audit/evidence", params={"subject": SUBJECT})
        ).status_code == 401

    async def test_another_tenant_is_404(self, client):
        assert (await record(client, "stranger")).status_code == 404

    async def test_a_service_account_outside_its_project_is_404(self, client):
        assert (await record(client, "ci", project=OTHER_PROJECT)).status_code == 404

    @pytest.mark.parametrize("who", ["viewer", "billing", "project-viewer", "other-project-member"])
    async def test_a_role_that_does_not_record_evidence_is_403(self, client, who):
        response = await record(client, who)
        assert response.status_code == 403, response.text

    async def test_the_platforms_own_evidence_is_for_operators(self, client):
        response = await client.post("/v1/audit/evidence", json=BODY, headers=auth("owner"))
        assert response.status_code == 403
        zero = await record(client, "operator", tenant=uuid.UUID(int=0))
        assert zero.status_code == 404  # not through a tenant route either

    async def test_a_lower_role_cannot_read(self, client):
        response = await client.get(
            "/v1/audit/evidence", params={"subject": SUBJECT}, headers=auth("billing")
        )
        assert response.status_code == 403

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"subject_digest": "sha256:nope"}, "subject_digest"),
            ({"kind": "Security Scan"}, "kind"),
            ({"outcome": "maybe"}, "outcome"),
            ({"details": {"blob": "x" * 20_000}}, "details"),
            ({"details": {"nul": "a\u0000b"}}, "details"),
            ({"details": _nested(10)}, "details"),
        ],
    )
    async def test_bad_input_names_the_field(self, client, audit_url, change, field):
        before = _rows(audit_url)
        response = await record(client, "owner", {**BODY, **change})
        assert response.status_code in (400, 422), response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in response.text
        assert _rows(audit_url) == before  # nothing half-applied


def _rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM audit_evidence").fetchone()[0]


def _outbox(url: str, evidence_id: str) -> list[bytes]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT payload FROM outbox WHERE type = 'audit.evidence.recorded' AND subject = %s",
            (evidence_id,),
        ).fetchall()
    return [bytes(r[0]) for r in rows]


async def test_record_read_back_and_the_event_in_the_same_transaction(client, audit_url):
    key = {"Idempotency-Key": uuid.uuid4().hex}
    made = await client.post(_path(), json=BODY, headers={**auth("ci"), **key})
    assert made.status_code == 201, made.text
    evidence = msgspec.convert(made.json(), EvidenceRecorded)
    assert (evidence.tenant_id, evidence.project_id) == (TENANT, PROJECT)
    assert (evidence.producer, evidence.producer_kind) == (CALLERS["ci"].subject, "service_account")
    again = await client.post(_path(), json=BODY, headers={**auth("ci"), **key})
    assert again.status_code == 201 and again.json()["evidence_id"] == str(evidence.evidence_id)
    events = _outbox(audit_url, str(evidence.evidence_id))
    assert len(events) == 1
    assert msgspec.json.decode(events[0], type=EvidenceRecorded) == evidence

    # readers: the tenant's readers, the project's roles, operators; not another tenant
    for who in ("owner", "viewer", "project-viewer", "ci", "operator"):
        got = await client.get("/v1/audit/evidence", params={"subject": SUBJECT}, headers=auth(who))
        assert got.status_code == 200, (who, got.text)
        assert [i["evidence_id"] for i in got.json()["items"]] == [str(evidence.evidence_id)], who
    for who in ("stranger", "other-project-member"):
        got = await client.get("/v1/audit/evidence", params={"subject": SUBJECT}, headers=auth(who))
        assert got.status_code == 200 and got.json()["items"] == [], who
    narrowed = await client.get(
        "/v1/audit/evidence",
        params={"subject": SUBJECT, "kind": "sbom"},
        headers=auth("owner"),
    )
    assert narrowed.json()["items"] == []
