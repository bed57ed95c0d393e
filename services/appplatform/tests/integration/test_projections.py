"""The projections of iam's tenants and gpuaas's nodes (the catalog's are test_catalog's)."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
import pytest
from psycopg import sql

from gpucloud_contracts.events.gpuaas import NodeChanged
from gpucloud_contracts.events.iam import TenantCreated, TenantSuspended

from .conftest import Stack

pytestmark = pytest.mark.integration


async def test_nodes_keep_their_agent_url_through_later_states(stack: Stack) -> None:
    node = uuid.uuid4()
    at = dt.datetime.now(dt.UTC)

    async def publish(kind: str, agent_url: str | None, when: dt.datetime) -> uuid.UUID:
        state = "registering" if kind == "registered" else kind
        return await stack.publish(
            "gpuaas.node.v1", f"gpuaas.node.{kind}", node,
            NodeChanged(node_id=node, name="node-a", provider="static", state=state,
                        gpu_count=1, agent_url=agent_url, occurred_at=when),
        )  # fmt: skip

    await stack.consumed(
        await publish("registered", "http://10.0.0.7:8200", at),
        await publish("offline", None, at + dt.timedelta(seconds=2)),
        await publish("ready", "http://10.0.0.9:8200", at + dt.timedelta(seconds=1)),  # late
    )
    assert stack.sql("SELECT name, agent_url, state FROM nodes WHERE node_id = %s", node) == [
        ("node-a", "http://10.0.0.7:8200", "offline")
    ]


async def test_a_suspension_is_not_undone_by_a_late_created(stack: Stack) -> None:
    tenant = uuid.uuid4()
    at = dt.datetime.now(dt.UTC)
    suspended = await stack.publish(
        "iam.tenant.v1", "iam.tenant.suspended", tenant,
        TenantSuspended(tenant_id=tenant, reason="unpaid", suspended_at=at), tenant,
    )  # fmt: skip
    created = await stack.publish(
        "iam.tenant.v1", "iam.tenant.created", tenant,
        TenantCreated(tenant_id=tenant, name="T", slug=f"t-{tenant.hex[:10]}", status="active",
                      created_at=at - dt.timedelta(days=1)),
        tenant,
    )  # fmt: skip
    await stack.consumed(suspended, created)
    assert stack.sql("SELECT status FROM tenants WHERE tenant_id = %s", tenant) == [("suspended",)]


@pytest.mark.parametrize("table", ["instances", "replicas", "signing_keys"])
def test_the_runtime_role_cannot_delete_records(stack: Stack, table: str) -> None:
    with psycopg.connect(stack.runtime_database, autocommit=True) as conn:
        conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
