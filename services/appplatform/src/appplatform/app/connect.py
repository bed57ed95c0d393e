"""Connect: where a request for an instance's port, or its logs, goes. The caller is
authorized like any route of the instance's project (`workload.read`; another tenant's
instance is 404); the port must be a declared, exposed http port of the instance's manifest
(404 otherwise); the request goes to a ready replica (503 while none is: no traffic reaches
a replica before its probe passes), through its node's agent, with an app-proxy token
appplatform signs for that node (app/keys.py)."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

from appplatform.app.access import authorize
from appplatform.app.controller import manifest_of
from appplatform.app.keys import KeyStore
from appplatform.domain.access import Action
from appplatform.store import repository as repo
from platformkit.auth import Principal
from platformkit.db import Database
from platformkit.errors import NotFound, ServiceUnavailable

LOG_STATES = ("running", "ready", "unready", "stopping")


@dataclass(frozen=True)
class Target:
    url: str  # the agent's URL for this request (path included, query not)
    token: str  # X-App-Proxy


async def port_target(
    db: Database, keys: KeyStore, principal: Principal, instance_id: uuid.UUID, port: int,
    path: str,
) -> Target:  # fmt: skip
    async with db.unit_of_work() as uow:
        row = await repo.get_instance(uow, instance_id)
    if row is None:
        raise NotFound(f"instance {instance_id} not found")
    await authorize(db, principal, Action.WORKLOAD_READ, row["tenant_id"], row["project_id"])
    declared = next((p for p in manifest_of(row).ports if p.port == port), None)
    if declared is None or not declared.expose or declared.protocol != "http":
        raise NotFound(f"port {port} is not an exposed http port of this instance")
    async with db.unit_of_work() as uow:
        ready = await repo.replica_endpoints(uow, instance_id)
    if not ready:
        raise ServiceUnavailable("no replica of this instance is ready")
    chosen = random.choice(ready)
    token = keys.proxy_token(
        node_name=chosen["node_name"], allocation_id=chosen["allocation_id"], port=port,
        scope="port", subject=principal.subject,
    )  # fmt: skip
    base = chosen["agent_url"].rstrip("/")
    return Target(
        f"{base}/v1/workloads/{chosen['allocation_id']}/ports/{port}/{path.lstrip('/')}", token
    )


async def logs_target(
    db: Database, keys: KeyStore, principal: Principal, tenant_id: uuid.UUID,
    project_id: uuid.UUID, instance_id: uuid.UUID, replica_id: uuid.UUID | None,
) -> Target:  # fmt: skip
    await authorize(db, principal, Action.WORKLOAD_READ, tenant_id, project_id)
    async with db.unit_of_work() as uow:
        row = await repo.get_instance(uow, instance_id)
        if row is None or row["tenant_id"] != tenant_id or row["project_id"] != project_id:
            raise NotFound(f"instance {instance_id} not found")
        replicas = await repo.replica_endpoints(uow, instance_id, LOG_STATES)
    if replica_id is not None:
        replicas = [r for r in replicas if r["replica_id"] == replica_id]
    if not replicas:
        raise ServiceUnavailable("no replica of this instance is running")
    chosen = replicas[0]
    token = keys.proxy_token(
        node_name=chosen["node_name"], allocation_id=chosen["allocation_id"], port=0,
        scope="logs", subject=principal.subject,
    )  # fmt: skip
    base = chosen["agent_url"].rstrip("/")
    return Target(f"{base}/v1/workloads/{chosen['allocation_id']}/logs", token)
