"""The projections terminal-gateway authorizes from, fed by inbox consumers (platformkit
consumers: each event applied once, in one transaction with its effects):

- `gpuaas.allocation.v1` -> `allocations` (tenant, project, node, state). An allocation
  leaving `running` revokes its live sessions in the same transaction (no session outlives
  its allocation; the node agent also kills the shells of a stopped allocation itself).
- `gpuaas.node.v1` -> `nodes` (name, agent URL): where the relay finds the PTY stream.
- `iam.tenant.v1` -> `tenants` (status). Suspension revokes the tenant's live sessions.
- `iam.ssh-key.v1` -> `ssh_keys`: which public key is whose, for `ssh` logins.

Memberships come from the kit's in-memory projection (platformkit.memberships), which the
token verifier already uses; watch.py re-checks live sessions when it changes.
"""

from __future__ import annotations

import msgspec

from gpucloud_contracts.catalog import Topic
from gpucloud_contracts.events.gpuaas import AllocationChanged, NodeChanged
from gpucloud_contracts.events.iam import SshKeyAdded, SshKeyRevoked, TenantCreated, TenantSuspended
from platformkit.consumers import Handler, Subscription
from platformkit.db import UnitOfWork
from platformkit.envelope import CloudEvent
from terminal_gateway.app.sessions import SessionService
from terminal_gateway.domain.sessions import Reason
from terminal_gateway.store.repository import ProjectionRepository, SessionRepository


def allocation_handler(service: SessionService) -> Handler:
    async def apply_allocation_event(event: CloudEvent, uow: UnitOfWork) -> None:
        a = msgspec.json.decode(event.data, type=AllocationChanged)
        await ProjectionRepository(uow).put_allocation(
            {
                "id": a.allocation_id, "tenant_id": a.tenant_id, "project_id": a.project_id,
                "node_id": a.node_id, "state": a.state, "updated_at": a.occurred_at,
            }
        )  # fmt: skip
        current = await ProjectionRepository(uow).allocation(a.allocation_id)
        if current is not None and current["state"] != "running":
            live = await SessionRepository(uow).live("allocation_id = :a", {"a": a.allocation_id})
            await service.revoke(uow, live, Reason.ALLOCATION_RELEASED)

    return apply_allocation_event


async def apply_node_event(event: CloudEvent, uow: UnitOfWork) -> None:
    n = msgspec.json.decode(event.data, type=NodeChanged)
    await ProjectionRepository(uow).put_node(
        {"id": n.node_id, "name": n.name, "agent_url": n.agent_url, "state": n.state,
         "updated_at": n.occurred_at}
    )  # fmt: skip


def tenant_handler(service: SessionService) -> Handler:
    async def apply_tenant_event(event: CloudEvent, uow: UnitOfWork) -> None:
        projections = ProjectionRepository(uow)
        if event.type == "iam.tenant.created":
            t = msgspec.json.decode(event.data, type=TenantCreated)
            await projections.put_tenant(t.tenant_id, t.status, t.created_at)
        elif event.type == "iam.tenant.suspended":
            s = msgspec.json.decode(event.data, type=TenantSuspended)
            await projections.put_tenant(s.tenant_id, "suspended", s.suspended_at)
            live = await SessionRepository(uow).live("tenant_id = :t", {"t": s.tenant_id})
            await service.revoke(uow, live, Reason.TENANT_SUSPENDED)

    return apply_tenant_event


async def apply_ssh_key_event(event: CloudEvent, uow: UnitOfWork) -> None:
    projections = ProjectionRepository(uow)
    if event.type == "iam.ssh-key.added":
        k = msgspec.json.decode(event.data, type=SshKeyAdded)
        await projections.put_ssh_key(
            {"id": k.key_id, "user_id": k.user_id, "fingerprint": k.fingerprint,
             "public_key": k.public_key, "added_at": k.added_at}
        )  # fmt: skip
    elif event.type == "iam.ssh-key.revoked":
        r = msgspec.json.decode(event.data, type=SshKeyRevoked)
        await projections.revoke_ssh_key(r.key_id, r.revoked_at)


def subscriptions(service: SessionService) -> list[Subscription]:
    return [
        Subscription("allocations", (Topic.GPUAAS_ALLOCATION_V1,), allocation_handler(service)),
        Subscription("nodes", (Topic.GPUAAS_NODE_V1,), apply_node_event),
        Subscription("tenants", (Topic.IAM_TENANT_V1,), tenant_handler(service)),
        Subscription("ssh-keys", (Topic.IAM_SSH_KEY_V1,), apply_ssh_key_event),
    ]
