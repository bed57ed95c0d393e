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
