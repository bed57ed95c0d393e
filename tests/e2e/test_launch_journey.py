"""architecture.md §5 as the portal walks it, through the gateway, for one fresh tenant:
sign up, enroll TOTP and sign in with it, pay through the sandbox provider, launch a MIG
slice and a whole GPU, release one, let the other run the balance down until billing's
`exhausted` makes gpuaas release it, then check that the statement, the ledger, ledger
verification, audit and the fleet status agree.

Two things are set up for this tenant only or for the duration of this module:

- Prices. The devstack seeds no price book, so the journey posts tenant overrides (operator)
  for the two price keys it uses: a public price would change every other test's rating.
- The metering period. gpuaas closes usage intervals every `GPUCLOUD_METERING_PERIOD_S`
  (60 s by default), so a running allocation is charged only once a minute. The
  `short_metering` fixture restarts the fleet's gpuaas with a 2 s period (devstack's child
  processes inherit this process's environment) and restarts it again with the original
  environment afterwards; a gpuaas already running with a short period is left alone.
  The restart runs whatever gpuaas code the working tree holds at that moment.

It found a gpuaas race, now fixed: a node sync skipped allocation rows the metering sweep
held (`FOR UPDATE SKIP LOCKED`), so a running workload fell out of the desired state and was
released as `workload_lost`. The sync now waits for those rows
(services/gpuaas/tests/integration/test_allocations.py::TestSyncWhileAnotherTransaction...).
"""

import base64
import datetime as dt
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pyotp
import pytest

from .conftest import gpuaas_sees_balance, verify_email
from .conftest import until as _until

pytestmark = pytest.mark.e2e

METERING_PERIOD_S = 2
MIN_RUNWAY_S = 5
# 3.60 USD per H100-hour (1,000 micro-units a second), a 1g.10gb slice at one seventh of it.
GPU_PRICE = ("gpu:h100-80gb", 3_600_000)
MIG_PRICE = ("mig:h100-80gb:1g.10gb", 504_000)
# A small payment: the whole GPU spends it within seconds.
PAYMENT_MICROS = 8_000


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _gpuaas_env(name: str) -> str | None:
    from devstack import supervise

    pid = supervise.running_pid("gpuaas")
    if pid is None:
        return None
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = (item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        return {k.decode(): v.decode() for k, v in pairs}.get(name)


def _restart_gpuaas(env: dict[str, str | None]) -> None:
    """Restart the fleet's gpuaas with `env` (None removes a variable), then put the test
    process's environment back as it was."""
    from devstack import stack

    saved = {name: os.environ.get(name) for name in env}
    try:
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        stack.restart("gpuaas")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _nodes_synced_since(gateway: httpx.Client, operator: dict[str, str], since: dt.datetime):
    """Every node agent of the fleet ready and heard from after `since`: the agents back off
    (up to 10 s) while gpuaas is down, and a launch before their next sync would wait for it.
    Nodes other tests registered (and abandoned) do not count."""
    from devstack.fleet import load

    agents = {agent.name for agent in load().node_agents}

    def probe() -> bool:
        listed = gateway.get("/v1/gpu/nodes", headers=operator).json()
        nodes = [n for n in listed if n["name"] in agents]
        return len(nodes) == len(agents) and all(
            n["state"] == "ready"
            and n["last_heartbeat_at"]
            and dt.datetime.fromisoformat(n["last_heartbeat_at"]) > since
            for n in nodes
        )

    return probe


@pytest.fixture(scope="module")
def short_metering(fleet) -> Iterator[None]:
    """gpuaas closes usage intervals every 2 s, so usage is rated within the test, and asks
    for a 5 s minimum runway (not 300 s): the journey's small top-up must fund its launches
    and still run out within the test."""
    wanted = {
        "GPUCLOUD_METERING_PERIOD_S": str(METERING_PERIOD_S),
        "GPUCLOUD_MIN_RUNWAY_S": str(MIN_RUNWAY_S),
    }
    current = {name: _gpuaas_env(name) for name in wanted}
    if current == wanted:
        yield
        return
    _restart_gpuaas(wanted)
    try:
        with fleet.client() as gateway:
            restarted = dt.datetime.now(dt.UTC)
            _until(
                "node agents synced with the restarted gpuaas",
                _nodes_synced_since(gateway, fleet.operator, restarted),
            )
        yield
    finally:
        _restart_gpuaas(current)


class Portal:
    """What the portal holds for one signed-in user: the gateway and a bearer token."""

    def __init__(self, gateway: httpx.Client, operator: dict[str, str]) -> None:
        self.gateway, self.operator = gateway, operator
        self.token = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def sign_in(self, email: str, password: str, tenant: str, otp: str | None = None) -> dict:
        form = {"grant_type": "password", "username": email, "password": password}
        form["tenant"] = tenant
        if otp is not None:
            form["otp"] = otp
        response = self.gateway.post("/v1/iam/token", data=form)
        assert response.status_code == 200, response.text
        self.token = response.json()["access_token"]
        return _claims(self.token)


def _allocation(portal: Portal, path: str) -> dict[str, Any] | None:
    response = portal.gateway.get(path, headers=portal.auth)
    if response.status_code == 503:  # see _launch: retried like the portal retries
        return None
    assert response.status_code == 200, response.text
    return response.json()


def _state_is(portal: Portal, path: str, *states: str) -> Callable[[], dict | None]:
    def probe() -> dict | None:
        body = _allocation(portal, path)
        return body if body is not None and body["state"] in states else None

    return probe


def _ledger(portal: Portal, tenant_id: str) -> list[dict[str, Any]]:
    items, after = [], 0
    while True:
        page = portal.gateway.get(
            f"/v1/billing/tenants/{tenant_id}/ledger",
            params={"after": after, "limit": 1000},
            headers=portal.auth,
        )
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        if body["next_after"] is None:
            return items
        after = body["next_after"]


def _signed(entry: dict[str, Any]) -> int:
    """The entry's effect on the tenant (no promotional grants in this journey)."""
    credits = {"top_up": 1, "grant": 1, "usage": -1}
    return credits[entry["kind"]] * entry["amount_micros"]


class TestLaunchJourney:
    def test_signup_to_statement(self, fleet, gateway, short_metering):
        portal = Portal(gateway, fleet.operator)
        started = time.monotonic()

        # 1. Sign up; enroll TOTP; sign in with password + otp.
        slug = f"journey-{uuid.uuid4().hex[:10]}"
        email, password = f"owner@{slug}.example", uuid.uuid4().hex + "Aa1!"
        signup = gateway.post(
            "/v1/iam/signup",
            json={"tenant_name": "Journey", "slug": slug, "email": email, "password": password},
            headers=_key(),
        )
        assert signup.status_code == 202, signup.text
        # ... and open the link iam mailed to the address (devstack's mail sink).
        verified = verify_email(gateway, email)
        tenant_id = verified["tenant"]["id"]
        project_id = verified["project"]["id"]

        assert portal.sign_in(email, password, slug)["amr"] == ["pwd"]
        enrolled = gateway.post("/v1/iam/me/mfa/totp", headers=portal.auth)
        assert enrolled.status_code in (200, 201), enrolled.text
        totp = pyotp.TOTP(enrolled.json()["secret"])
        activated = gateway.post(
            "/v1/iam/me/mfa/totp/verify", json={"code": totp.now()}, headers=portal.auth
        )
        assert activated.status_code in (200, 201), activated.text
        assert len(activated.json()["recovery_codes"]) == 10
        # A password alone is no longer enough.
        refused = gateway.post(
            "/v1/iam/token",
            data={"grant_type": "password", "username": email, "password": password},
        )
        assert refused.status_code == 400 and "mfa_required" in refused.text
        # The code just used for activation may not be replayed: the next step's code is
        # within the accepted window (±1 step) and later than the last accepted one.
        claims = portal.sign_in(email, password, slug, otp=totp.at(time.time() + 30))
        assert claims["amr"] == ["pwd", "otp"]
        assert claims["tenant"] == tenant_id and "owner" in claims["roles"]

        # Prices for this tenant only (operator), effective from before any usage.
        since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        for price_key, per_hour in (GPU_PRICE, MIG_PRICE):
            price = gateway.post(
                "/v1/billing/prices",
                json={
                    "price_key": price_key,
                    "micros_per_gpu_hour": per_hour,
                    "effective_from": since.isoformat(),
                    "tenant_id": tenant_id,
                },
                headers=fleet.operator | _key(),
            )
            assert price.status_code == 201, price.text

        # 2. Pay through the sandbox provider; its signed webhook settles the payment.
        pay_key = _key()  # one payment, however many tries (billing opens the tenant from
        # iam's event, so the first try may come before it knows the tenant)

        def pay() -> dict | None:
            r = gateway.post(
                f"/v1/billing/tenants/{tenant_id}/payments",
                json={"amount_micros": PAYMENT_MICROS},
                headers=portal.auth | pay_key,
            )
            return r.json() if r.status_code in (200, 201) else None

        payment = _until("payment accepted", pay)
        payment_path = f"/v1/billing/tenants/{tenant_id}/payments/{payment['id']}"
        _until(
            "payment settled",
            lambda: gateway.get(payment_path, headers=portal.auth).json()["status"] == "settled",
        )
        balance = gateway.get(f"/v1/billing/tenants/{tenant_id}/balance", headers=portal.auth)
        assert balance.json()["available_micros"] == PAYMENT_MICROS
        assert balance.json()["standing"] == "low"
        # gpuaas's money gate fails closed (402 until it has projected the payment).
        _until("gpuaas sees the payment", gpuaas_sees_balance(fleet, tenant_id, PAYMENT_MICROS))

        # 3. Launch a MIG slice and a whole GPU; both run on the simulated node agents.
        base = f"/v1/gpu/tenants/{tenant_id}/projects/{project_id}/allocations"

        def launch(body: dict[str, Any]) -> str:
            key = _key()

            def attempt() -> str | None:
                nonlocal key
                r = gateway.post(base, json=body, headers=portal.auth | key)
                if r.status_code == 402:  # a recorded rejection: the next try is a new intent
                    key = _key()
                # 402: gpuaas has not seen the payment yet. 503: the gateway's pooled
                # connection to the gpuaas the fixture just restarted was stale; the same
                # Idempotency-Key makes the retry safe.
                # 404: gpuaas has not projected the signed-up project from iam's event yet.
                if r.status_code in (402, 404, 503):
                    return None
                assert r.status_code == 201, r.text
                return r.json()["id"]

            allocation_id = _until(f"launch {body}", attempt)
            # The same key replays the same allocation.
            again = gateway.post(base, json=body, headers=portal.auth | key)
            assert again.status_code == 201 and again.json()["id"] == allocation_id
            return allocation_id

        mig_path = f"{base}/{launch({'sku': 'h100-80gb', 'mig_profile': '1g.10gb'})}"
        gpu_path = f"{base}/{launch({'sku': 'h100-80gb', 'count': 1})}"
        mig = _until("MIG slice running", _state_is(portal, mig_path, "running"))
        gpu = _until("whole GPU running", _state_is(portal, gpu_path, "running"))
        assert mig["instances"][0]["memory_slices"] == 1 and mig["price_key"] == MIG_PRICE[0]
        assert gpu["instances"][0]["memory_slices"] == 8 and gpu["price_key"] == GPU_PRICE[0]
        assert mig["node_id"] and gpu["node_id"]

        # 4. Usage accrues and is rated: both allocations have charges in the ledger.
        def rated(allocation_id: str) -> Callable[[], bool]:
            return lambda: any(
                e["kind"] == "usage" and e.get("allocation_id") == allocation_id
                for e in _ledger(portal, tenant_id)
            )

        _until("MIG slice rated", rated(mig["id"]), within=METERING_PERIOD_S * 5)
        _until("whole GPU rated", rated(gpu["id"]), within=METERING_PERIOD_S * 5)

        # 5. Release the MIG slice: released, its usage closed.
        release = gateway.post(f"{mig_path}/release", headers=portal.auth | _key())
        assert release.status_code == 202, release.text
        assert release.json()["reason"] == "user_release"
        # Leaving running closed the last usage interval at this moment.
        mig_ran_s = (
            dt.datetime.fromisoformat(release.json()["updated_at"])
            - dt.datetime.fromisoformat(mig["running_since"])
        ).total_seconds()
        _until("MIG slice released", _state_is(portal, mig_path, "released"))

        # 6. The whole GPU runs the balance down; billing's exhausted event makes gpuaas
        # release it.
        runway_s = PAYMENT_MICROS / (GPU_PRICE[1] / 3600)
        drained = _until(
            "whole GPU released for an exhausted balance",
            _state_is(portal, gpu_path, "releasing", "released"),
            within=runway_s + 10 * METERING_PERIOD_S,
        )
        assert drained["reason"] == "balance_exhausted", drained
        _until("whole GPU released", _state_is(portal, gpu_path, "released"))
        # And an exhausted tenant cannot launch again.
        refused = gateway.post(base, json={"sku": "h100-80gb"}, headers=portal.auth | _key())
        assert refused.status_code == 402, refused.text

        # 7. The books agree. Wait until rating is done (the final intervals of both
        # allocations): the ledger no longer changes.
        def settled_books() -> tuple[list, dict, dict] | None:
            before = _ledger(portal, tenant_id)
            month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
            statement = gateway.get(
                f"/v1/billing/tenants/{tenant_id}/statements/{month}", headers=portal.auth
            )
            assert statement.status_code == 200, statement.text
            balance = gateway.get(f"/v1/billing/tenants/{tenant_id}/balance", headers=portal.auth)
            time.sleep(1.0)
            after = _ledger(portal, tenant_id)
            return (after, statement.json(), balance.json()) if before == after else None

        entries, statement, balance = _until("ledger at rest", settled_books, every=0)
        net = sum(_signed(e) for e in entries)
        assert statement["opening_micros"] == 0
        assert statement["closing_micros"] == net == balance["available_micros"]
        assert net <= 0 and balance["standing"] == "exhausted"
        assert sum(line["amount_micros"] for line in statement["lines"]) == net
        top_ups = [line for line in statement["lines"] if line["kind"] == "top_up"]
        assert sum(line["amount_micros"] for line in top_ups) == PAYMENT_MICROS
        for price_key, _ in (GPU_PRICE, MIG_PRICE):
            charged = sum(
                e["amount_micros"]
                for e in entries
                if e["kind"] == "usage" and e.get("price_key") == price_key
            )
            lines = [
                line
                for line in statement["lines"]
                if line["kind"] == "usage" and line["price_key"] == price_key
            ]
            assert charged > 0
            assert sum(line["amount_micros"] for line in lines) == -charged
            assert all(line["project_id"] == project_id for line in lines)
        # The MIG slice was charged for its whole run, its closing interval included
        # (billable seconds are rounded up per interval).
        mig_usage = [
            e for e in entries if e["kind"] == "usage" and e.get("allocation_id") == mig["id"]
        ]
        billed_s = sum(e["billable_seconds"] for e in mig_usage)
        assert int(mig_ran_s) <= billed_s <= mig_ran_s + len(mig_usage), (mig_ran_s, billed_s)
        # Every usage interval is in the ledger once (one leg each: no promotional credit).
        usage_ids = [e["id"] for e in entries if e["kind"] == "usage"]
        assert len(usage_ids) == len(set(usage_ids))

        verify = gateway.get("/v1/billing/ledger/verify", headers=fleet.operator)
        assert verify.status_code == 200, verify.text
        assert verify.json()["ok"] is True, verify.json()

        # Audit recorded the privileged steps of the sign-up.
        def audited() -> set[str] | None:
            page = gateway.get(
                "/v1/audit/records", params={"tenant": tenant_id}, headers=fleet.operator
            ).json()
            types = {r["record"]["event_type"] for r in page["items"]}
            return types if {"iam.tenant.created", "iam.membership.granted"} <= types else None

        _until("audit records of the sign-up", audited)

        # Every service is ready.
        from devstack.fleet import load

        expected = {s.name for s in load().services} | {"gateway"}

        def all_ready() -> bool:
            services = {s["name"]: s for s in gateway.get("/v1/status").json()["services"]}
            return all(services.get(n, {}).get("ready") for n in expected)

        _until("every service ready", all_ready)
        print(f"\njourney: {time.monotonic() - started:.1f} s (after the gpuaas restart)")
