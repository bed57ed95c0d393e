"""Idle stop on real PostgreSQL: the node's activity reports move last_active_at, and the
sweep (with an injected clock) releases only the allocation idle for its whole policy,
with reason idle_stop and its events through the outbox."""

import datetime as dt
import json
import uuid

import psycopg
import pytest

from gpuaas.app.allocations import CreateAllocation, get_allocation
from gpuaas.app.nodes import sync_node
from gpuaas.app.sweeper import stop_idle_allocations
from gpuaas.settings import GpuaasSettings
from platformkit.errors import ValidationFailed

from .conftest import add_node, create, outbox

pytestmark = pytest.mark.integration
SETTINGS = GpuaasSettings(metering_period_s=60)


async def _create(db, idle_stop_after_s):
    command = CreateAllocation(
        uuid.uuid4(), uuid.uuid4(), "h100-80gb", "1g.10gb", 1, None, idle_stop_after_s
    )
    status, body = await create(db, command, SETTINGS)
    assert status == 201, body
    return uuid.UUID(body["id"])


async def test_idle_allocation_is_released_and_an_active_one_is_not(db, gpuaas_url):
    node = await add_node(db)
    idle, active, no_policy = (
        await _create(db, 120),
        await _create(db, 120),
        await _create(db, None),
    )
    running = {str(a): "running" for a in (idle, active, no_policy)}
    await sync_node(db, node.node_id, running, SETTINGS)
    view = (await get_allocation(db, idle)).allocation
    assert view.last_active_at == view.running_since and view.idle_stop_after_s == 120
    # They have been running for 200 s (backdated, as the metering test does).
    with psycopg.connect(gpuaas_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE allocations SET running_since = now() - interval '200 s',"
            " usage_cursor = now() - interval '200 s', last_active_at = now() - interval '200 s'"
        )
    # The node saw `active` use CPU 50 s ago; the others never reported activity.
    now = dt.datetime.now(dt.UTC)
    await sync_node(
        db, node.node_id, running, SETTINGS, {str(active): now - dt.timedelta(seconds=50)}
    )
    assert await stop_idle_allocations(db, SETTINGS, lambda: now) == 1

    view = (await get_allocation(db, idle)).allocation
    assert view.state == "releasing" and view.reason == "idle_stop"
    for a in (active, no_policy):
        assert (await get_allocation(db, a)).allocation.state == "running"
    events = [
        (e["type"], json.loads(e["payload"]))
        for e in await outbox(db, idle, "gpuaas.allocation.v1")
    ]
    assert events[-1][0] == "gpuaas.allocation.releasing"
    assert events[-1][1]["reason"] == "idle_stop"
    usage = await outbox(db, idle, "metering.usage.v1")
    assert json.loads(usage[-1]["payload"])["final"] is True

    # Once `active` has been silent for its whole policy, it goes too.
    assert await stop_idle_allocations(db, SETTINGS, lambda: now + dt.timedelta(seconds=80)) == 1
    assert (await get_allocation(db, active)).allocation.reason == "idle_stop"
    assert (await get_allocation(db, no_policy)).allocation.state == "running"


async def test_activity_from_the_future_is_clamped_to_the_server_clock(db):
    node = await add_node(db)
    aid = await _create(db, 60)
    await sync_node(db, node.node_id, {str(aid): "running"}, SETTINGS)
    far = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    await sync_node(db, node.node_id, {str(aid): "running"}, SETTINGS, {str(aid): far})
    kept = (await get_allocation(db, aid)).allocation.last_active_at
    assert kept is not None and kept < far - dt.timedelta(days=29)
    assert await stop_idle_allocations(db, SETTINGS, lambda: kept + dt.timedelta(seconds=61)) == 1


@pytest.mark.parametrize("value", [0, 59, 2_592_001])
async def test_a_bad_policy_names_the_field(db, value):
    with pytest.raises(ValidationFailed) as exc:
        await _create(db, value)
    assert "idle_stop_after_s" in str(exc.value.to_problem("/x"))
