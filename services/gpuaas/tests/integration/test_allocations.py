"""Allocation use cases on real PostgreSQL: lifecycle through node sync, outbox events,
quota, validation, idempotency, node loss, metering, and the double-booking guard."""

import asyncio
import datetime as dt
import json
import uuid

import psycopg
import pytest

from gpuaas.app.allocations import CreateAllocation, create_allocation, release_allocation
from gpuaas.app.nodes import mark_silent_nodes_offline, set_node_state, sync_node
from gpuaas.app.quotas import set_quota
from gpuaas.app.sweeper import close_usage_intervals, retry_releases
from gpuaas.domain.nodes import NodeState
from gpuaas.settings import GpuaasSettings
from platformkit.errors import IdempotencyMismatch, ValidationFailed

from .conftest import add_node, create, outbox

pytestmark = pytest.mark.integration
SETTINGS = GpuaasSettings(metering_period_s=60)


async def _create(
    db,
    sku="h100-80gb",
    profile=None,
    count=1,
    *,
    tenant=None,
    project=None,
    key=None,
    settings=SETTINGS,
):
    command = CreateAllocation(
        tenant or uuid.uuid4(), project or uuid.uuid4(), sku, profile, count, key
    )
    return await create(db, command, settings)


class TestLifecycleThroughTheNode:
    async def test_scheduled_running_released_with_an_event_per_transition(self, db):
        node = await add_node(db)
        status, body = await _create(db, profile="1g.10gb")
        assert status == 201 and body["state"] == "scheduled"
        aid = uuid.UUID(body["id"])
        desired = await sync_node(db, node.node_id, {}, SETTINGS)
        assert [a.id for a, _ in desired] == [aid]
        await sync_node(db, node.node_id, {str(aid): "running"}, SETTINGS)
        await release_allocation(db, aid, SETTINGS, lambda a: None)
        desired = await sync_node(db, node.node_id, {str(aid): "running"}, SETTINGS)
        assert desired == []  # releasing: the node should tear it down
        await sync_node(db, node.node_id, {}, SETTINGS)
        events = await outbox(db, aid)
        assert [e["type"] for e in events if e["topic"] == "gpuaas.allocation.v1"] == [
            "gpuaas.allocation.requested",
            "gpuaas.allocation.scheduled",
            "gpuaas.allocation.provisioning",
            "gpuaas.allocation.running",
            "gpuaas.allocation.releasing",
            "gpuaas.allocation.released",
        ]
        usage = [json.loads(e["payload"]) for e in events if e["topic"] == "metering.usage.v1"]
        assert len(usage) == 1 and usage[0]["final"] is True
        assert usage[0]["price_key"] == "mig:h100-80gb:1g.10gb"
        # Released slices are free again: a 7g fits.
        status, _ = await _create(db, profile="7g.80gb")
        assert status == 201

    async def test_provision_error_fails_then_releases(self, db):
        node = await add_node(db)
        _, body = await _create(db)
        await sync_node(db, node.node_id, {body["id"]: "failed"}, SETTINGS)
        types = [e["type"] for e in await outbox(db, uuid.UUID(body["id"]))]
        assert types[-2:] == ["gpuaas.allocation.failed", "gpuaas.allocation.releasing"]


class TestRequests:
    async def test_bad_requests_name_the_field(self, db):
        for kwargs, field in [
            ({"sku": "v100"}, "sku"),
            ({"profile": "5g.50gb"}, "mig_profile"),
            ({"count": 9}, "count"),
            ({"profile": "7g.80gb", "count": 9}, "count"),
        ]:
            with pytest.raises(ValidationFailed) as err:
                await _create(db, **kwargs)
            assert err.value.errors[0].field == field

    async def test_idempotency_key_replays_and_refuses_another_body(self, db):
        await add_node(db, gpus=2)
        tenant, project = uuid.uuid4(), uuid.uuid4()
        first = await _create(db, tenant=tenant, project=project, key="k1")
        again = await _create(db, tenant=tenant, project=project, key="k1")
        assert first == again
        with pytest.raises(IdempotencyMismatch):
            await _create(db, tenant=tenant, project=project, key="k1", count=2)

    async def test_quota_is_enforced_per_project(self, db):
        await add_node(db, gpus=4)
        tenant, project = uuid.uuid4(), uuid.uuid4()
        await set_quota(db, tenant, project, 7)
        assert (await _create(db, tenant=tenant, project=project, profile="4g.40gb"))[0] == 201
        status, body = await _create(db, tenant=tenant, project=project, profile="4g.40gb")
        assert status == 409 and body["type"].endswith("quota-exceeded")
        assert (await _create(db, tenant=tenant, project=project, profile="3g.40gb"))[0] == 201

    async def test_no_capacity_is_a_recorded_rejection(self, db):
        await add_node(db, sku="a100-40gb")
        status, body = await _create(db, count=1)  # no h100 at all
        assert status == 409 and body["type"].endswith("no-capacity")

    async def test_multi_gpu_lands_on_one_node(self, db):
        await add_node(db, gpus=2)
        big = await add_node(db, gpus=4)
        status, _ = await _create(db, count=3)
        assert status == 201
        async with db.unit_of_work() as uow:
            nodes = await uow.fetch_all("SELECT DISTINCT node_id FROM allocations")
        assert [r["node_id"] for r in nodes] == [big.node_id]


class TestNoDoubleBooking:
    async def test_concurrent_requests_for_the_last_slices(self, db):
        await add_node(db)  # one GPU: two 3g fit, no more
        results = await asyncio.gather(*(_create(db, profile="3g.40gb") for _ in range(16)))
        assert sorted(s for s, _ in results) == [201, 201] + [409] * 14
        async with db.unit_of_work() as uow:
            live = await uow.fetch_all(
                "SELECT start FROM allocation_instances WHERE released_at IS NULL ORDER BY start"
            )
            slices = await uow.fetch_one("SELECT count(*) AS n FROM gpu_slices")
        assert [r["start"] for r in live] == [0, 4] and slices["n"] == 8

    async def test_concurrent_requests_of_one_project_never_exceed_its_quota(self, db):
        await add_node(db, gpus=2)
        tenant, project = uuid.uuid4(), uuid.uuid4()
        await set_quota(db, tenant, project, 3)
        results = await asyncio.gather(
            *(_create(db, profile="1g.10gb", tenant=tenant, project=project) for _ in range(10))
        )
        assert sorted(s for s, _ in results) == [201] * 3 + [409] * 7
        assert all(b["type"].endswith("quota-exceeded") for s, b in results if s == 409)

    async def test_the_database_refuses_a_second_booking_of_a_slice(self, db, gpuaas_url):
        await add_node(db)
        await _create(db, profile="1g.10gb")
        with psycopg.connect(gpuaas_url) as conn:
            row = conn.execute("SELECT gpu_id, slice, instance_id FROM gpu_slices").fetchone()
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute("INSERT INTO gpu_slices VALUES (%s, %s, %s)", row)


class TestNodeLoss:
    async def test_silent_node_goes_offline_and_its_allocations_fail(self, db, gpuaas_url):
        node = await add_node(db, gpus=2)
        _, scheduled = await _create(db)
        _, running = await _create(db)
        await sync_node(db, node.node_id, {running["id"]: "running"}, SETTINGS)
        with psycopg.connect(gpuaas_url, autocommit=True) as conn:
            conn.execute("UPDATE nodes SET last_heartbeat_at = now() - interval '1 hour'")
        assert await mark_silent_nodes_offline(db, SETTINGS) == 1
        a = [e["type"] for e in await outbox(db, uuid.UUID(scheduled["id"]))]
        b = [e["type"] for e in await outbox(db, uuid.UUID(running["id"]))]
        assert a[-2:] == ["gpuaas.allocation.failed", "gpuaas.allocation.releasing"]
        assert b[-1] == "gpuaas.allocation.releasing"
        assert [e["type"] for e in await outbox(db, node.node_id)][-1] == "gpuaas.node.offline"
        # It comes back: ready again, and reporting nothing completes the releases.
        await sync_node(db, node.node_id, {}, SETTINGS)
        assert [e["type"] for e in await outbox(db, uuid.UUID(running["id"]))][-1] == (
            "gpuaas.allocation.released"
        )

    async def test_release_retries_back_off_then_fail(self, db, gpuaas_url):
        node = await add_node(db)
        _, body = await _create(db)
        await sync_node(db, node.node_id, {body["id"]: "running"}, SETTINGS)
        await release_allocation(db, uuid.UUID(body["id"]), SETTINGS, lambda a: None)
        for _ in range(6):
            with psycopg.connect(gpuaas_url, autocommit=True) as conn:
                conn.execute("UPDATE allocations SET next_release_at = now() - interval '1 s'")
            await retry_releases(db, SETTINGS)
        events = await outbox(db, uuid.UUID(body["id"]), "gpuaas.allocation.v1")
        attempts = [
            json.loads(e["payload"]).get("attempt")
            for e in events
            if e["type"] == "gpuaas.allocation.releasing"
        ]
        assert attempts == [1, 2, 3, 4, 5, 6]
        assert events[-1]["type"] == "gpuaas.allocation.release_failed"

    async def test_drain_releases_and_cordon_stops_placement(self, db):
        node = await add_node(db)
        _, body = await _create(db, profile="1g.10gb")
        await set_node_state(db, node.node_id, NodeState.CORDONED, SETTINGS)
        assert (await _create(db, profile="1g.10gb"))[0] == 409
        await set_node_state(db, node.node_id, NodeState.DRAINING, SETTINGS)
        types = [e["type"] for e in await outbox(db, uuid.UUID(body["id"]))]
        assert types[-1] == "gpuaas.allocation.releasing"


class TestMetering:
    async def test_closed_intervals_every_period_and_a_final_one(self, db, gpuaas_url):
        node = await add_node(db)
        _, body = await _create(db)
        aid = body["id"]
        await sync_node(db, node.node_id, {aid: "running"}, SETTINGS)
        with psycopg.connect(gpuaas_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE allocations SET usage_cursor = now() - interval '150 s',"
                " running_since = now() - interval '150 s'"
            )
        assert await close_usage_intervals(db, SETTINGS) == 2
        assert await close_usage_intervals(db, SETTINGS) == 0
        await release_allocation(db, uuid.UUID(aid), SETTINGS, lambda a: None)
        usage = [
            json.loads(e["payload"]) for e in await outbox(db, uuid.UUID(aid), "metering.usage.v1")
        ]
        assert [u["sequence"] for u in usage] == [0, 1, 2]
        assert [u["final"] for u in usage] == [False, False, True]
        assert usage[0]["duration_ms"] == 60_000 and usage[0]["price_key"] == "gpu:h100-80gb"
        assert usage[1]["ended_at"] == usage[2]["started_at"]
        assert 29_000 <= usage[2]["duration_ms"] <= 40_000
        ids = {u["interval_id"] for u in usage}
        assert len(ids) == 3
        assert dt.datetime.fromisoformat(usage[0]["started_at"]).tzinfo is not None


class TestSyncWhileAnotherTransactionHoldsTheAllocation:
    async def test_a_locked_running_allocation_stays_in_the_desired_state(self, db, gpuaas_url):
        """The metering sweep holds a running allocation's row while it closes an interval;
        a node sync at that moment must wait for it, not leave it out of the desired state
        (which made the node stop the workload and gpuaas release it as workload_lost)."""
        node = await add_node(db)
        _, body = await _create(db, profile="1g.10gb")
        aid = body["id"]
        await sync_node(db, node.node_id, {}, SETTINGS)
        await sync_node(db, node.node_id, {aid: "running"}, SETTINGS)

        async with await psycopg.AsyncConnection.connect(gpuaas_url) as holder:
            async with holder.transaction():
                await holder.execute("SELECT 1 FROM allocations WHERE id = %s FOR UPDATE", (aid,))
                sync = asyncio.create_task(sync_node(db, node.node_id, {aid: "running"}, SETTINGS))
                await asyncio.sleep(0.5)
                assert not sync.done()  # it waits for the row instead of skipping it
        desired = await sync
        assert [str(a.id) for a, _ in desired] == [aid]
        async with db.unit_of_work() as uow:
            row = await uow.fetch_one("SELECT state FROM allocations WHERE id = :id", {"id": aid})
        assert row["state"] == "running"


class TestLiveIndexAcrossReplicas:
    """Two `Database` objects on one database are two scheduler replicas: each keeps its
    own live placement index, current through the capacity generations."""

    @pytest.fixture
    async def other(self, gpuaas_url):
        from platformkit.db import Database

        replica = Database(gpuaas_url, pool_size=4)
        yield replica
        await replica.dispose()

    async def test_a_replica_sees_the_other_replicas_bookings_and_releases(self, db, other):
        node = await add_node(db)  # one GPU
        status, body = await _create(db, profile="4g.40gb")
        assert status == 201 and body["state"] == "scheduled"
        # The other replica (index built now) and this one (index current) agree: 3g fits
        # at 4, a second 4g does not.
        assert (await _create(other, profile="4g.40gb"))[0] == 409
        assert (await _create(other, profile="3g.40gb"))[0] == 201
        assert (await _create(db, profile="3g.40gb"))[0] == 409
        # Released on replica `other`: replica `db` places a 7g once both are gone.
        async with db.unit_of_work() as uow:
            ids = [
                r["id"]
                for r in await uow.fetch_all("SELECT id FROM allocations WHERE state = 'scheduled'")
            ]
        for aid in ids:
            await release_allocation(other, aid, SETTINGS, lambda a: None)
        assert (await _create(db, profile="7g.80gb"))[0] == 409  # still releasing
        await sync_node(other, node.node_id, {}, SETTINGS)  # node confirms: released
        assert (await _create(db, profile="7g.80gb"))[0] == 201

    async def test_cordon_on_one_replica_stops_placement_on_the_other(self, db, other):
        node = await add_node(db, gpus=2)
        assert (await _create(db))[0] == 201
        await set_node_state(other, node.node_id, NodeState.CORDONED, SETTINGS)
        assert (await _create(db))[0] == 409
        await set_node_state(other, node.node_id, NodeState.READY, SETTINGS)
        assert (await _create(db))[0] == 201

    async def test_two_replicas_racing_for_the_last_slices_never_double_book(self, db, other):
        await add_node(db)  # one GPU: at most seven 1g.10gb
        # Both replicas build their index before the race, so both start from the same view.
        assert (await _create(db, profile="1g.10gb"))[0] == 201
        assert (await _create(other, profile="1g.10gb"))[0] == 201
        results = await asyncio.gather(
            *(_create(db if i % 2 else other, profile="1g.10gb") for i in range(12))
        )
        assert sorted(s for s, _ in results) == [201] * 5 + [409] * 7
        async with db.unit_of_work() as uow:
            live = await uow.fetch_all(
                "SELECT start FROM allocation_instances WHERE released_at IS NULL ORDER BY start"
            )
        assert [r["start"] for r in live] == list(range(7))

    async def test_a_rolled_back_booking_does_not_hide_capacity(self, db):
        await add_node(db)  # one GPU: one 4g

        def failing_encode(outcome):
            raise RuntimeError("after the booking, before the commit")

        command = CreateAllocation(uuid.uuid4(), uuid.uuid4(), "h100-80gb", "4g.40gb", 1)
        with pytest.raises(RuntimeError):
            await create_allocation(db, command, SETTINGS, failing_encode)
        # The booking was applied to this replica's index, then rolled back.
        assert (await _create(db, profile="4g.40gb"))[0] == 201
