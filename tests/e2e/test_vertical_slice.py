"""The first vertical slice, through the gateway: a tenant created in iam is committed with
its outbox row, published by the relay, recorded by audit through its inbox, and readable
through the gateway, all under the caller's trace id."""

import asyncio
import datetime as dt
import os
import time
import uuid

import psycopg
import pytest
from aiokafka import TopicPartition

from gpucloud_contracts.catalog import TOPICS
from platformkit.kafka import KafkaSettings
from platformkit.kafka import consumer as kafka_consumer

pytestmark = pytest.mark.e2e


def _traceparent() -> tuple[str, str]:
    trace_id = os.urandom(16).hex()
    return trace_id, f"00-{trace_id}-{os.urandom(8).hex()}-01"


def _wait_for_audit(gateway, fleet, target: str, within: float = 20.0) -> dict:
    """The first audit record about `target`, once a signed checkpoint covers it."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        page = gateway.get(
            "/v1/audit/records", params={"target": target}, headers=fleet.operator
        ).json()
        if page["items"]:
            return page["items"][0]["record"]
        time.sleep(0.2)
    raise AssertionError(f"no audit record for {target} within {within}s")


def _slug() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


async def _kafka_traceparent(kafka: KafkaSettings, tenant_id: str) -> str | None:
    consumer = kafka_consumer(kafka, client_id="e2e-tests", enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = TOPICS["iam.tenant.v1"].partitions
        tps = [TopicPartition("iam.tenant.v1", p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(0, ends[tp] - 200))
        deadline = asyncio.get_running_loop().time() + 10
        while asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if record.key == tenant_id.encode():
                        return dict(record.headers).get("traceparent", b"").decode()
        return None
    finally:
        await consumer.stop()


class TestTenantCreatedReachesAudit:
    async def test_one_trace_id_across_iam_outbox_kafka_and_audit(self, fleet, gateway):
        trace_id, traceparent = _traceparent()
        created = gateway.post(
            "/v1/iam/tenants",
            json={"name": "Slice Inc", "slug": _slug()},
            headers={"traceparent": traceparent} | fleet.operator,
        )
        assert created.status_code == 201, created.text
        tenant = created.json()
        assert created.headers["x-trace-id"] == trace_id

        record = _wait_for_audit(gateway, fleet, tenant["id"])
        assert record["event_type"] == "iam.tenant.created"
        assert record["target"]["tenant"] == tenant["id"]
        assert record["details"]["data"]["slug"] == tenant["slug"]
        assert record["trace_id"] == trace_id

        # iam's outbox row and the Kafka record carry the same trace.
        iam_db = fleet.pg_admin_url.rsplit("/", 1)[0] + "/iam"
        with psycopg.connect(iam_db) as conn:
            row = conn.execute(
                "SELECT traceparent, sent_at FROM outbox WHERE subject = %s", (tenant["id"],)
            ).fetchone()
        assert row is not None and row[1] is not None
        assert row[0].split("-")[1] == trace_id
        header = await _kafka_traceparent(fleet.kafka, tenant["id"])
        assert header is not None and header.split("-")[1] == trace_id

    def test_audit_log_checkpoint_is_signed_by_its_published_key(self, fleet, gateway):
        from gpucloud_trust.checkpoint import open_checkpoint
        from gpucloud_trust.note import Verifier

        key = gateway.get("/v1/audit/log/key").json()
        latest = gateway.get("/v1/audit/log/checkpoint", headers=fleet.operator).json()
        checkpoint = open_checkpoint(
            latest["note"].encode(), [Verifier.from_vkey(key["vkey"])], key["origin"]
        )
        assert checkpoint.size == latest["size"] >= 1


class TestStatusReadback:
    def test_every_service_reports_version_and_readiness(self, fleet, gateway):
        from devstack.fleet import load

        expected = {s.name for s in load().services} | {"gateway"}
        deadline = time.monotonic() + 30
        while True:
            services = {s["name"]: s for s in gateway.get("/v1/status").json()["services"]}
            if all(services.get(n, {}).get("ready") for n in expected):
                break
            assert time.monotonic() < deadline, f"not ready: {services}"
            time.sleep(0.5)
        # readiness for anyone (devstack turns the public status page on); versions, git
        # SHAs, instance names and start times only for operators (issue 15 item 6)
        for name in expected:
            assert services[name].get("version") is None, services[name]
            assert services[name].get("git_sha") is None and services[name].get("instance") is None
        full = {
            s["name"]: s
            for s in gateway.get("/v1/status", headers=fleet.operator).json()["services"]
        }
        for name in expected:
            assert full[name]["version"]
            assert full[name]["git_sha"]
            assert full[name]["instance"]


class TestBadInputAndIdempotency:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"name": "X", "slug": "Not A Slug"}, "slug"),
            ({"slug": "fine-slug"}, "name"),
            ({"name": "", "slug": "fine-slug"}, "name"),
            ({"name": "X", "slug": "fine-slug", "plan": "gold"}, "plan"),
        ],
    )
    def test_invalid_tenant_is_a_problem_naming_the_field(self, fleet, gateway, body, field):
        response = gateway.post("/v1/iam/tenants", json=body, headers=fleet.operator)
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == 400
        assert field in problem["detail"]

    def test_malformed_json_is_a_problem_not_a_500(self, fleet, gateway):
        response = gateway.post(
            "/v1/iam/tenants",
            content=b"{not json",
            headers={"content-type": "application/json"} | fleet.operator,
        )
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("application/problem+json")

    def test_taken_slug_is_a_409(self, fleet, gateway):
        body = {"name": "Twice", "slug": _slug()}
        assert gateway.post("/v1/iam/tenants", json=body, headers=fleet.operator).status_code == 201
        again = gateway.post("/v1/iam/tenants", json=body, headers=fleet.operator)
        assert again.status_code == 409
        assert again.json()["type"].endswith("/conflict")

    def test_idempotency_key_replays_and_rejects_another_body(self, fleet, gateway):
        key = uuid.uuid4().hex
        body = {"name": "Once", "slug": _slug()}
        headers = {"Idempotency-Key": key} | fleet.operator
        first = gateway.post("/v1/iam/tenants", json=body, headers=headers)
        second = gateway.post("/v1/iam/tenants", json=body, headers=headers)
        assert first.status_code == second.status_code == 201
        assert first.json() == second.json()
        other = gateway.post(
            "/v1/iam/tenants",
            json={"name": "Other", "slug": _slug()},
            headers=headers,
        )
        assert other.status_code == 422


class TestOperatorRoutesAreClosed:
    @pytest.mark.parametrize("path", ["/v1/audit/records", "/v1/iam/tenants"])
    def test_anonymous_and_wrong_token_are_refused(self, gateway, path):
        assert gateway.get(path).status_code == 401
        wrong = gateway.get(path, headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 403

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/v1/iam/tenants", {"name": "Mine", "slug": "anyone-may-not"}),
            ("/v1/iam/users", {"email": "someone@example.test", "password": "x" * 16}),
        ],
    )
    def test_creating_a_tenant_or_user_directly_is_an_operators(self, gateway, path, body):
        assert gateway.post(path, json=body).status_code == 401
        wrong = gateway.post(path, json=body, headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code in (401, 403)

    def test_unknown_route_is_a_problem_404(self, gateway):
        response = gateway.get("/v1/nowhere/at/all")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")


def _audited(gateway, fleet, target: str, action: str, within: float = 30.0) -> dict:
    """The audit record of `action` on `target`, once a signed checkpoint covers it."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        page = gateway.get(
            "/v1/audit/records",
            params={"target": target, "action": action},
            headers=fleet.operator,
        ).json()
        if page["items"]:
            return page["items"][0]["record"]
        time.sleep(0.3)
    raise AssertionError(f"no audit record of {action} on {target} within {within}s")


def _assert_au3(record: dict, trace_id: str, target_kind: str, tenant: str | None) -> None:
    """Who (operator), what, where (the gateway's client address, the service), outcome, trace."""
    assert record["actor"]["kind"] == "operator" and record["actor"]["subject"], record
    assert record["target"]["kind"] == target_kind
    assert record["target"]["tenant"] == tenant
    assert record["client_address"], record
    assert record["service"] == record["action"].split(".")[0]
    assert record["outcome"] == "success"
    assert record["trace_id"] == trace_id
    assert record["time"].endswith(("Z", "+00:00"))


class TestOperatorActionsAreRecorded:
    """Issue 15 item 1: billing's grants and reversals, gpuaas's quota changes, node
    registration, cordon and drain, each read back from audit with its AU-3 fields."""

    def test_grant_and_its_reversal(self, fleet, gateway):
        from .conftest import sign_up, until

        signed_up, _ = sign_up(gateway, "audit-grant", "Audit-grant-1!aA")
        tenant = signed_up["tenant"]["id"]
        trace_id, traceparent = _traceparent()
        expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat()

        def granted():
            r = gateway.post(
                f"/v1/billing/tenants/{tenant}/grants",
                json={"amount_micros": 5_000_000, "expires_at": expires},
                headers=fleet.operator | {"traceparent": traceparent},
            )
            return None if r.status_code == 404 else r  # until billing opened the wallet

        grant = until("billing knows the tenant", granted)
        assert grant.status_code == 201, grant.text
        grant_id = grant.json()["grant_id"]
        record = _audited(gateway, fleet, grant_id, "billing.credit.granted")
        _assert_au3(record, trace_id, "grant", tenant)
        assert record["details"]["data"]["amount_micros"] == 5_000_000

        trace_id, traceparent = _traceparent()
        reversed_ = gateway.post(
            f"/v1/billing/transactions/{grant_id}/reversal",
            headers=fleet.operator | {"traceparent": traceparent},
        )
        assert reversed_.status_code == 201, reversed_.text
        record = _audited(gateway, fleet, grant_id, "billing.transaction.reversed")
        _assert_au3(record, trace_id, "transaction", tenant)
        assert record["details"]["data"]["reversed_kind"] == "grant"

    def test_quota_change(self, fleet, gateway):
        from .conftest import sign_up, until

        signed_up, _ = sign_up(gateway, "audit-quota", "Audit-quota-1!aA")
        tenant, project = signed_up["tenant"]["id"], signed_up["project"]["id"]
        trace_id, traceparent = _traceparent()

        def quota():
            r = gateway.put(
                f"/v1/gpu/tenants/{tenant}/projects/{project}/quota",
                json={"max_compute_slices": 3},
                headers=fleet.operator | {"traceparent": traceparent},
            )
            return None if r.status_code == 404 else r  # until gpuaas projected the project

        assert until("gpuaas knows the project", quota).status_code == 200
        record = _audited(gateway, fleet, project, "gpuaas.quota.changed")
        _assert_au3(record, trace_id, "quota", tenant)
        assert record["target"]["project"] == project
        assert record["details"]["data"]["max_compute_slices"] == 3

    def test_node_registration_cordon_and_drain(self, fleet, gateway):
        # a node without GPUs: nothing is ever placed on it
        trace_id, traceparent = _traceparent()
        headers = fleet.operator | {"traceparent": traceparent}
        registered = gateway.post(
            "/v1/gpu/nodes/register",
            json={"name": f"audit-{uuid.uuid4().hex[:8]}", "gpus": []},
            headers=headers,
        )
        assert registered.status_code == 201, registered.text
        node = registered.json()["node_id"]
        record = _audited(gateway, fleet, node, "gpuaas.node.registered")
        _assert_au3(record, trace_id, "node", None)
        for step, action in (("cordon", "gpuaas.node.cordoned"), ("drain", "gpuaas.node.draining")):
            trace_id, traceparent = _traceparent()
            done = gateway.post(
                f"/v1/gpu/nodes/{node}/{step}",
                headers=fleet.operator | {"traceparent": traceparent},
            )
            assert done.status_code == 200, done.text
            _assert_au3(_audited(gateway, fleet, node, action), trace_id, "node", None)
