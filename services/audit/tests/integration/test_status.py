"""The fleet's status read model shows readiness, and versions, git SHAs, instance names and
start times only to operators (issue 15 item 6); without a token only when the status page
is configured public (GPUCLOUD_AUDIT_STATUS_PUBLIC)."""

import dataclasses
import datetime as dt
import uuid

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from audit.api import routes
from audit.bootstrap import DEFINITION
from platformkit.auth import Principal
from platformkit.http import build_service_app
from platformkit.settings import ServiceSettings

pytestmark = pytest.mark.integration
OPERATOR = "op-status-token"


class _Tokens:
    async def verify(self, token: str) -> Principal:
        return Principal(
            subject=str(uuid.uuid4()),
            kind="user",
            tenant_id=uuid.uuid4(),
            roles=frozenset({"owner"}),
        )


@pytest.fixture
async def client(audit_url):
    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(audit_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO service_status VALUES ('billing', 'host-7', '1.2.3', 'abc123', true,"
            " '{}', %s, %s)",
            (now, now),
        )
    definition = dataclasses.replace(
        DEFINITION, subscriptions=(), batch_subscriptions=(), jobs=(), kafka=False, relay=False
    )
    settings = ServiceSettings("audit", database_url=audit_url, operator_token=OPERATOR)
    async with AsyncTestClient(build_service_app(definition, settings)) as c:
        c.app.state.token_verifier = _Tokens()
        yield c


async def test_versions_and_hosts_are_for_operators_only(client, monkeypatch):
    monkeypatch.setattr(routes, "STATUS_PUBLIC", True)
    anonymous = (await client.get("/v1/audit/status")).json()["services"]
    tenant_owner = (
        await client.get("/v1/audit/status", headers={"Authorization": "Bearer user"})
    ).json()["services"]
    for seen in (anonymous, tenant_owner):
        assert [(s["name"], s["ready"]) for s in seen] == [("billing", True)]
        assert {k: seen[0][k] for k in ("version", "git_sha", "instance", "started_at")} == {
            "version": None,
            "git_sha": None,
            "instance": None,
            "started_at": None,
        }
    operator = await client.get("/v1/audit/status", headers={"Authorization": f"Bearer {OPERATOR}"})
    full = operator.json()["services"][0]
    assert (full["version"], full["git_sha"], full["instance"]) == ("1.2.3", "abc123", "host-7")


async def test_without_a_token_the_status_is_refused_unless_public(client, monkeypatch):
    monkeypatch.setattr(routes, "STATUS_PUBLIC", False)
    refused = await client.get("/v1/audit/status")
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("application/problem+json")
    signed_in = await client.get("/v1/audit/status", headers={"Authorization": "Bearer user"})
    assert signed_in.status_code == 200
