"""Readiness evidence (issue 15 item 5): a deploy records which version of every service
passed its readiness as one audit evidence record, read back by its subject digest; it is the
platform's own, so operators read it and tenants do not."""

import pytest

from .conftest import bearer, sign_up

pytestmark = pytest.mark.e2e


def test_the_deploy_readiness_is_one_readback(fleet, gateway):
    from devstack import stack
    from devstack.fleet import load

    digest, message = stack.record_readiness(load())  # what `just up` did; idempotent
    assert digest is not None, message
    found = gateway.get(
        "/v1/audit/evidence",
        params={"subject": digest, "kind": "readiness"},
        headers=fleet.operator,
    )
    assert found.status_code == 200, found.text
    [record] = found.json()["items"]
    services = record["details"]["services"]
    assert {s.name for s in load().services} <= set(services)
    assert record["outcome"] == ("pass" if all(s["ready"] for s in services.values()) else "fail")
    assert record["producer_kind"] == "operator"

    signed_up, owner = sign_up(gateway, "readiness-reader", "Readiness-reader-1!aA")
    token = owner.sign_in(gateway, signed_up["tenant"]["id"])
    as_tenant = gateway.get("/v1/audit/evidence", params={"subject": digest}, headers=bearer(token))
    assert as_tenant.status_code == 200 and as_tenant.json()["items"] == []


def test_the_helm_readiness_hook_records_each_service_version(fleet, gateway, monkeypatch):
    """What the chart's post-install/post-upgrade Job runs (`python -m audit.readiness`)."""
    import uuid

    from audit import readiness

    monkeypatch.setenv("GPUCLOUD_OPERATOR_TOKEN", fleet.operator_token)
    release = f"e2e-{uuid.uuid4().hex[:8]}"
    argv = ["--audit-url", fleet.gateway, "--services", "iam,audit", "--release", release]
    assert readiness.main([*argv, "--timeout-s", "30"]) == 0
    assert readiness.main([*argv, "--timeout-s", "30"]) == 0  # a retried Job: same records

    status = {
        s["name"]: s
        for s in gateway.get("/v1/audit/status", headers=fleet.operator).json()["services"]
    }
    for name in ("iam", "audit"):
        version = {"service": name, **{k: status[name][k] for k in ("version", "git_sha")}}
        found = gateway.get(
            "/v1/audit/evidence",
            params={"subject": readiness.subject_of(version), "kind": "readiness"},
            headers=fleet.operator,
        ).json()["items"]
        mine = [r for r in found if r["details"].get("release") == release]
        assert len(mine) == 1, found
        assert mine[0]["outcome"] == "pass" and mine[0]["details"]["version"] == version["version"]
