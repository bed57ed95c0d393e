"""The money gate and the hard stop on real PostgreSQL, billing absent: a tenant with no
balance standing, or launching a key without a price, is refused (recorded as rejected);
gpuaas's own projection releases a tenant's allocations once its balance is projected a
grace of burn below zero (injected clock), with reason balance_exhausted and the usual
events, and leaves a tenant with runway alone."""

import datetime as dt
import json
import uuid

import psycopg
import pytest

from gpuaas.app.allocations import CreateAllocation, get_allocation
from gpuaas.app.hard_stop import stop_exhausted_tenants
from gpuaas.app.nodes import sync_node
from gpuaas.settings import GpuaasSettings

from .conftest import add_node, create, fund, outbox

pytestmark = pytest.mark.integration
SETTINGS = GpuaasSettings(metering_period_s=60, min_runway_s=0, hard_stop_grace_s=10)
# The list price of an H100 1g.10gb slice (USD micro-units per hour).
SLICE_MICROS_PER_HOUR = 514_286


def _command(tenant: uuid.UUID, profile: str | None = "1g.10gb") -> CreateAllocation:
    return CreateAllocation(tenant, uuid.uuid4(), "h100-80gb", profile, 1, None)


async def test_no_balance_standing_is_refused_402(db):
    await add_node(db)
    status, problem = await create(db, _command(uuid.uuid4()), SETTINGS, funded=False)
    assert status == 402, problem
    assert problem["type"].endswith("/balance-unknown")
    assert "billing has not reported a balance" in problem["detail"]
    aid = uuid.UUID(problem["detail"].split()[1])
    view = (await get_allocation(db, aid)).allocation
    assert view.state == "rejected" and view.reason == "balance_unknown"


async def test_zero_balance_exhausted_is_refused_402(db, gpuaas_url):
    await add_node(db)
    tenant = uuid.uuid4()
    await fund(db, tenant, 0)
    with psycopg.connect(gpuaas_url, autocommit=True) as conn:
        conn.execute("UPDATE balance_standing SET standing = 'exhausted'")
    status, problem = await create(db, _command(tenant), SETTINGS)
    assert status == 402 and problem["type"].endswith("/balance-exhausted"), problem


async def test_unknown_price_is_refused_409_naming_the_key(db, gpuaas_url):
    await add_node(db)
    tenant = uuid.uuid4()
    await fund(db, tenant)
    with psycopg.connect(gpuaas_url, autocommit=True) as conn:
        conn.execute("DELETE FROM price_versions WHERE price_key = 'mig:h100-80gb:1g.10gb'")
    status, problem = await create(db, _command(tenant), SETTINGS, funded=False)
    assert status == 409, problem
    assert problem["type"].endswith("/price-unknown")
    assert "mig:h100-80gb:1g.10gb" in problem["detail"] and "USD" in problem["detail"]
    # Another key, priced, still launches.
    status, body = await create(db, _command(tenant, "1g.20gb"), SETTINGS, funded=False)
    assert status == 201, body


async def test_projected_exhaustion_releases_past_the_grace(db, gpuaas_url):
    node = await add_node(db)
    poor, rich = uuid.uuid4(), uuid.uuid4()
    # 1,000 micros: 7 s of the slice's burn (142.857 micros a second).
    await fund(db, poor, 1_000)
    await fund(db, rich, 10**9)
    ids = []
    for tenant in (poor, poor, rich):
        status, body = await create(db, _command(tenant), SETTINGS)
        assert status == 201, body
        ids.append(uuid.UUID(body["id"]))
    await sync_node(db, node.node_id, {str(a): "running" for a in ids}, SETTINGS)
    # Billing said so at t0; both of the poor tenant's slices run from t0: 285.714 micros a
    # second, zero at 3.5 s, due at 13.5 s (the grace: 10 s of that burn).
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
    with psycopg.connect(gpuaas_url, autocommit=True) as conn:
        conn.execute("UPDATE balance_standing SET as_of = %s", [t0])
        conn.execute("UPDATE allocations SET running_since = %s, usage_cursor = %s", [t0, t0])

    def at(seconds: float):
        return lambda: t0 + dt.timedelta(seconds=seconds)

    assert await stop_exhausted_tenants(db, SETTINGS, at(13.4)) == 0
    for a in ids:
        assert (await get_allocation(db, a)).allocation.state == "running"
    assert await stop_exhausted_tenants(db, SETTINGS, at(13.6)) == 2
    for a in ids[:2]:
        view = (await get_allocation(db, a)).allocation
        assert view.state == "releasing" and view.reason == "balance_exhausted"
        events = await outbox(db, a, "gpuaas.allocation.v1")
        assert events[-1]["type"] == "gpuaas.allocation.releasing"
        assert json.loads(events[-1]["payload"])["reason"] == "balance_exhausted"
        usage = await outbox(db, a, "metering.usage.v1")
        assert json.loads(usage[-1]["payload"])["final"] is True
    assert (await get_allocation(db, ids[2])).allocation.state == "running"
    # Nothing is left burning for the poor tenant: a later pass releases nothing more.
    assert await stop_exhausted_tenants(db, SETTINGS, at(60)) == 0


async def test_a_newer_balance_moves_the_projection(db, gpuaas_url):
    """Billing's later announcement (a top-up, or usage rated) replaces the projection's
    starting point: the burn before its as_of is in its available balance already."""
    node = await add_node(db)
    tenant = uuid.uuid4()
    await fund(db, tenant, 1_000)
    status, body = await create(db, _command(tenant), SETTINGS)
    assert status == 201, body
    aid = uuid.UUID(body["id"])
    await sync_node(db, node.node_id, {str(aid): "running"}, SETTINGS)
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
    with psycopg.connect(gpuaas_url, autocommit=True) as conn:
        conn.execute("UPDATE allocations SET running_since = %s, usage_cursor = %s", [t0, t0])
        # At t0 + 60 s billing reports 5,000 left (a top-up): zero at t0 + 95 s.
        conn.execute(
            "UPDATE balance_standing SET as_of = %s, available_micros = 5000",
            [t0 + dt.timedelta(seconds=60)],
        )
    assert await stop_exhausted_tenants(db, SETTINGS, lambda: t0 + dt.timedelta(seconds=104)) == 0
    assert await stop_exhausted_tenants(db, SETTINGS, lambda: t0 + dt.timedelta(seconds=106)) == 1
    assert (await get_allocation(db, aid)).allocation.reason == "balance_exhausted"
