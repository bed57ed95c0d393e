"""The hard stop holds while billing is down (docs/gpuaas.md, "Hard stop"): a tenant with a
small balance launches a whole GPU, billing is killed while it runs, and gpuaas, on its own
projection of the balance, releases it (reason balance_exhausted) once the projection is a
grace of burn below zero. The overdraft (the burn from the projected zero to the release)
is measured and must lie between the grace and the grace plus one sweep interval of burn.
billing is started again in a `finally`, and then rates what the allocation used.

The module reuses the launch journey's `short_metering` (gpuaas restarted with a 2 s
metering period and a 5 s minimum runway, so a few seconds of balance may launch)."""

import datetime as dt
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from .conftest import bearer, gpuaas_sees_balance, idempotency_key, sign_up, until
from .test_launch_journey import _gpuaas_env, short_metering  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e

PASSWORD = "stop-" + uuid.uuid4().hex + "Aa1!"
PRICE_KEY = "gpu:h100-80gb"
# 3.60 an H100-hour: 1,000 micro-units a second. The payment lasts 8 s at that burn.
MICROS_PER_HOUR = 3_600_000
PAYMENT_MICROS = 8_000

# what one sweep may take for its own queries and release on a loaded 2-core machine
SWEEP_WORK_S = 1.0


def _gpuaas_db(fleet) -> str:
    return fleet.pg_admin_url.rsplit("/", 1)[0] + "/gpuaas"


def _row(fleet, sql: str, *args: Any) -> tuple | None:
    with psycopg.connect(_gpuaas_db(fleet), autocommit=True) as conn:
        return conn.execute(sql, list(args)).fetchone()


def _pay(gateway: httpx.Client, auth: dict[str, str], tenant: str) -> None:
    key = idempotency_key()
    path = f"/v1/billing/tenants/{tenant}/payments"

    def pay() -> dict | None:
        r = gateway.post(path, json={"amount_micros": PAYMENT_MICROS}, headers=auth | key)
        return r.json() if r.status_code in (200, 201) else None

    payment = until("payment accepted", pay)
    until(
        "payment settled",
        lambda: gateway.get(f"{path}/{payment['id']}", headers=auth).json()["status"] == "settled",
    )


def _start_billing() -> None:
    """Start billing again for the tests after this one; on a loaded machine it may take
    longer than devstack's 60 s to be ready (the process is started by then: wait more)."""
    from devstack import stack
    from devstack.fleet import load
    from devstack.processes import url

    try:
        stack.restart("billing")
    except stack.StackError:
        ready = url(load().find("billing")) + "/readyz"

        def up() -> bool:
            try:
                return httpx.get(ready, timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        until("billing ready again", up, within=180, every=1)


def _burned(micros_per_hour: int, seconds: float) -> float:
    return micros_per_hour * seconds / 3600


def test_gpuaas_stops_a_running_allocation_while_billing_is_down(fleet, gateway, short_metering):  # noqa: F811
    from devstack import stack

    signed_up, owner = sign_up(gateway, "stop", PASSWORD)
    tenant, project = signed_up["tenant"]["id"], signed_up["project"]["id"]
    auth = bearer(owner.enroll(gateway, tenant))
    # A price for this tenant only (a public one would change every other test's rating).
    price = gateway.post(
        "/v1/billing/prices",
        json={
            "price_key": PRICE_KEY,
            "micros_per_gpu_hour": MICROS_PER_HOUR,
            "effective_from": (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat(),
            "tenant_id": tenant,
        },
        headers=fleet.operator | idempotency_key(),
    )
    assert price.status_code == 201, price.text
    _pay(gateway, auth, tenant)
    until("gpuaas sees the payment", gpuaas_sees_balance(fleet, tenant, PAYMENT_MICROS))
    until(
        "gpuaas sees the tenant's price",
        lambda: _row(
            fleet,
            "SELECT 1 FROM price_versions WHERE scope = %s AND price_key = %s",
            tenant,
            PRICE_KEY,
        ),
    )

    base = f"/v1/gpu/tenants/{tenant}/projects/{project}/allocations"

    def launched() -> str | None:
        r = gateway.post(base, json={"sku": "h100-80gb"}, headers=auth | idempotency_key())
        if r.status_code in (404, 503):  # the project not projected yet; a stale connection
            return None
        assert r.status_code == 201, r.text
        return r.json()["id"]

    allocation = until("launch accepted", launched)
    path = f"{base}/{allocation}"
    until("running", lambda: gateway.get(path, headers=auth).json()["state"] == "running")

    grace_s = float(_gpuaas_env("GPUCLOUD_HARD_STOP_GRACE_S") or 10)
    sweep_s = float(_gpuaas_env("GPUCLOUD_SWEEP_INTERVAL_S") or 1)
    stack.kill("billing")
    try:
        # Nothing billing says reaches gpuaas now: its own projection must stop the GPU.
        killed = dt.datetime.now(dt.UTC)

        def stopped() -> dict | None:
            body = gateway.get(path, headers=auth).json()
            return body if body["state"] in ("releasing", "released") else None

        body = until("released by gpuaas", stopped, within=PAYMENT_MICROS / 1000 + grace_s + 30)
        assert body["reason"] == "balance_exhausted", body
        available, as_of = _row(
            fleet,
            "SELECT available_micros, as_of FROM balance_standing WHERE tenant_id = %s",
            tenant,
        )
        running_since, released_at = _row(
            fleet, "SELECT running_since, usage_cursor FROM allocations WHERE id = %s", allocation
        )
        assert as_of < killed  # the last word billing got out
    finally:
        _start_billing()

    # The projected zero: the balance billing last reported, burned from then (or from the
    # start) at the tenant's price.
    start = max(as_of, running_since)
    zero_at = start + dt.timedelta(seconds=available * 3600 / MICROS_PER_HOUR)
    overdraft_s = (released_at - zero_at).total_seconds()
    overdraft = _burned(MICROS_PER_HOUR, overdraft_s)
    # grace, then at most one sweep interval until the sweep that sees it, plus that sweep's
    # own work (its queries and the release transaction: SWEEP_WORK_S)
    bound = _burned(MICROS_PER_HOUR, grace_s + sweep_s + SWEEP_WORK_S)
    print(
        f"hard stop: {available} micros at {as_of.isoformat()}, zero at {zero_at.isoformat()},"
        f" released {overdraft_s:.3f} s later: overdraft {overdraft:.0f} micros"
        f" (grace {_burned(MICROS_PER_HOUR, grace_s):.0f}, bound {bound:.0f})"
    )
    assert _burned(MICROS_PER_HOUR, grace_s) <= overdraft <= bound

    # billing, back, rates everything the allocation used: its books see the overdraft too.
    def rated() -> dict | None:
        r = gateway.get(f"/v1/billing/tenants/{tenant}/balance", headers=auth)
        if r.status_code != 200:
            return None
        used = (released_at - running_since).total_seconds()
        charged = PAYMENT_MICROS - r.json()["available_micros"]
        return r.json() if charged >= _burned(MICROS_PER_HOUR, used) - 1 else None

    final = until("billing rates the usage", rated, within=60)
    print(f"billing's closing balance: {final['available_micros']} micros ({final['standing']})")
    assert final["standing"] == "exhausted"
