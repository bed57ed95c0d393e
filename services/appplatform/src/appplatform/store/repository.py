"""Every SQL statement of appplatform. Functions take the use case's unit of work and never
commit; rows come back as mappings."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from platformkit.db import UnitOfWork

# ----------------------------------------------------------------------------- projections


async def remember_project(
    uow: UnitOfWork, project_id: uuid.UUID, tenant_id: uuid.UUID, created_at: dt.datetime
) -> None:
    await uow.execute(
        "INSERT INTO projects (project_id, tenant_id, created_at) VALUES (:p, :t, :c)"
        " ON CONFLICT (project_id) DO NOTHING",
        {"p": project_id, "t": tenant_id, "c": created_at},
    )


async def project_exists(uow: UnitOfWork, tenant_id: uuid.UUID, project_id: uuid.UUID) -> bool:
    row = await uow.fetch_one(
        "SELECT 1 AS known FROM projects WHERE project_id = :p AND tenant_id = :t",
        {"p": project_id, "t": tenant_id},
    )
    return row is not None


async def set_tenant_status(
    uow: UnitOfWork, tenant_id: uuid.UUID, status: str, at: dt.datetime
) -> None:
    """Created (its status) or suspended; a suspension never reverts to an older created."""
    await uow.execute(
        "INSERT INTO tenants (tenant_id, status, updated_at) VALUES (:t, :s, :at)"
        " ON CONFLICT (tenant_id) DO UPDATE SET status = EXCLUDED.status,"
        " updated_at = EXCLUDED.updated_at"
        " WHERE tenants.status <> 'suspended' OR EXCLUDED.status = 'suspended'",
        {"t": tenant_id, "s": status, "at": at},
    )


async def tenant_status(uow: UnitOfWork, tenant_id: uuid.UUID) -> str | None:
    row = await uow.fetch_one("SELECT status FROM tenants WHERE tenant_id = :t", {"t": tenant_id})
    return None if row is None else row["status"]


async def upsert_node(
    uow: UnitOfWork,
    node_id: uuid.UUID,
    name: str,
    agent_url: str | None,
    sku: str | None,
    state: str,
    at: dt.datetime,
) -> None:
    await uow.execute(
        "INSERT INTO nodes (node_id, name, agent_url, sku, state, updated_at)"
        " VALUES (:id, :name, :url, :sku, :state, :at)"
        " ON CONFLICT (node_id) DO UPDATE SET name = EXCLUDED.name,"
        " agent_url = COALESCE(EXCLUDED.agent_url, nodes.agent_url),"
        " sku = COALESCE(EXCLUDED.sku, nodes.sku), state = EXCLUDED.state,"
        " updated_at = EXCLUDED.updated_at WHERE nodes.updated_at <= EXCLUDED.updated_at",
        {"id": node_id, "name": name, "url": agent_url, "sku": sku, "state": state, "at": at},
    )


async def ready_node_skus(uow: UnitOfWork) -> set[str]:
    rows = await uow.fetch_all(
        "SELECT DISTINCT sku FROM nodes WHERE state = 'ready' AND sku IS NOT NULL"
    )
    return {r["sku"] for r in rows}


async def get_node(uow: UnitOfWork, node_id: uuid.UUID) -> Any:
    return await uow.fetch_one("SELECT * FROM nodes WHERE node_id = :id", {"id": node_id})


# ----------------------------------------------------------------------------- releases


async def upsert_release(uow: UnitOfWork, row: dict[str, Any]) -> bool:
    """The release at this event's sequence; False when a higher one is already kept (an
    event delivered late or again changes nothing)."""
    result = await uow.fetch_one(
        "INSERT INTO releases (version_id, tenant_id, app_id, app, project_id, version,"
        " manifest_digest, manifest, manifest_error, description, channels, yanked, sequence,"
        " published_at, updated_at)"
        " VALUES (:version_id, :tenant_id, :app_id, :app, :project_id, :version,"
        " :manifest_digest, CAST(:manifest AS jsonb), :manifest_error, :description,"
        " :channels, :yanked, :sequence, :occurred_at, :occurred_at)"
        " ON CONFLICT (version_id) DO UPDATE SET channels = EXCLUDED.channels,"
        " yanked = EXCLUDED.yanked, sequence = EXCLUDED.sequence,"
        " updated_at = EXCLUDED.updated_at"
        " WHERE releases.sequence < EXCLUDED.sequence"
        " RETURNING version_id",
        row,
    )
    return result is not None


async def catalog_rows(
    uow: UnitOfWork,
    namespaces: list[uuid.UUID],
    q: str | None,
    channel: str | None,
    limit: int,
) -> list[Any]:
    """Promoted, unyanked releases with a valid manifest in these namespaces, newest first
    within each app."""
    return await uow.fetch_all(
        "SELECT * FROM releases WHERE tenant_id = ANY(:ns) AND manifest IS NOT NULL"
        " AND NOT yanked AND cardinality(channels) > 0"
        " AND (CAST(:channel AS text) IS NULL OR :channel = ANY(channels))"
        " AND (CAST(:q AS text) IS NULL OR app ILIKE :q OR description ILIKE :q)"
        " ORDER BY tenant_id = :own DESC, app, published_at DESC, version DESC LIMIT :limit",
        {
            "ns": namespaces,
            "channel": channel,
            "q": None if not q else "%" + q.replace("%", r"\%").replace("_", r"\_") + "%",
            "own": namespaces[0],
            "limit": limit,
        },
    )


async def launchable_releases(uow: UnitOfWork, namespace: uuid.UUID, app: str) -> list[Any]:
    """The app's releases that may be launched (valid manifest, promoted, not yanked)."""
    return await uow.fetch_all(
        "SELECT * FROM releases WHERE tenant_id = :ns AND app = :app AND manifest IS NOT NULL"
        " AND NOT yanked AND cardinality(channels) > 0 ORDER BY published_at DESC",
        {"ns": namespace, "app": app},
    )


async def find_release(uow: UnitOfWork, namespace: uuid.UUID, app: str, version: str) -> Any:
    return await uow.fetch_one(
        "SELECT * FROM releases WHERE tenant_id = :ns AND app = :app AND version = :v",
        {"ns": namespace, "app": app, "v": version},
    )


async def app_known(uow: UnitOfWork, namespace: uuid.UUID, app: str) -> bool:
    row = await uow.fetch_one(
        "SELECT 1 AS known FROM releases WHERE tenant_id = :ns AND app = :app LIMIT 1",
        {"ns": namespace, "app": app},
    )
    return row is not None


# ----------------------------------------------------------------------------- instances

_INSTANCE_JSON = ("manifest", "env", "resources", "conditions")
# The columns the use cases change (named by code, never by a request).
_INSTANCE_UPDATES = frozenset(
    {"version", "version_id", "manifest_digest", "manifest", "env", "channel", "replicas",
     "generation", "spec_generation", "observed_generation", "desired_state", "stop_reason",
     "state", "reason", "ready_replicas", "crash_count", "conditions", "updated_at"}
)  # fmt: skip
_REPLICA_UPDATES = frozenset(
    {"state", "outcome", "reason", "allocation_id", "node_id", "unready_since", "updated_at"}
)
_LOCK = " FOR UPDATE"


async def insert_instance(uow: UnitOfWork, row: dict[str, Any]) -> Any:
    """The new instance, or None when the project already has a live one of this name."""
    result = await uow.fetch_one(
        "INSERT INTO instances (instance_id, tenant_id, project_id, name, app_tenant_id, app,"
        " channel, version, version_id, manifest_digest, manifest, env, resources, replicas,"
        " generation, spec_generation, state, conditions, created_by, created_at, updated_at)"
        " VALUES (:instance_id, :tenant_id, :project_id, :name, :app_tenant_id, :app,"
        " :channel, :version, :version_id, :manifest_digest, CAST(:manifest AS jsonb),"
        " CAST(:env AS jsonb), CAST(:resources AS jsonb), :replicas, 1, 1, 'pending',"
        " CAST(:conditions AS jsonb), :created_by, :now, :now)"
        " ON CONFLICT (project_id, name) WHERE state NOT IN ('stopped', 'failed') DO NOTHING"
        " RETURNING *",
        row,
    )
    return result


async def get_instance(uow: UnitOfWork, instance_id: uuid.UUID, *, lock: bool = False) -> Any:
    query = "SELECT * FROM instances WHERE instance_id = :id"
    return await uow.fetch_one(
        query + _LOCK if lock else query,
        {"id": instance_id},
    )


async def list_instances(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    project_id: uuid.UUID,
    limit: int,
    after: uuid.UUID | None,
) -> list[Any]:
    return await uow.fetch_all(
        "SELECT * FROM instances WHERE tenant_id = :t AND project_id = :p"
        " AND (CAST(:after AS uuid) IS NULL OR instance_id > :after)"
        " ORDER BY instance_id LIMIT :limit",
        {"t": tenant_id, "p": project_id, "after": after, "limit": limit},
    )


async def update_instance(uow: UnitOfWork, instance_id: uuid.UUID, **fields: Any) -> Any:
    assert fields.keys() <= _INSTANCE_UPDATES, fields.keys() - _INSTANCE_UPDATES
    sets = ", ".join(
        f"{k} = CAST(:{k} AS jsonb)" if k in _INSTANCE_JSON else f"{k} = :{k}" for k in fields
    )
    return await uow.fetch_one(
        f"UPDATE instances SET {sets} WHERE instance_id = :instance_id RETURNING *",  # noqa: S608
        {**fields, "instance_id": instance_id},
    )


async def live_instance_ids(uow: UnitOfWork, limit: int) -> list[uuid.UUID]:
    """Instances the controller still looks after, and terminal ones that hold replicas."""
    rows = await uow.fetch_all(
        "SELECT instance_id FROM instances WHERE state NOT IN ('stopped', 'failed')"
        " UNION SELECT DISTINCT instance_id FROM replicas"
        " WHERE state IN ('requested', 'allocated', 'running', 'ready', 'unready')"
        " LIMIT :limit",
        {"limit": limit},
    )
    return [r["instance_id"] for r in rows]


async def replicas_of(uow: UnitOfWork, instance_id: uuid.UUID) -> list[Any]:
    return await uow.fetch_all(
        "SELECT * FROM replicas WHERE instance_id = :id ORDER BY slot, requested_at",
        {"id": instance_id},
    )


async def insert_replica(uow: UnitOfWork, row: dict[str, Any]) -> None:
    await uow.execute(
        "INSERT INTO replicas (replica_id, instance_id, slot, spec_generation, generation,"
        " state, requested_at, updated_at)"
        " VALUES (:replica_id, :instance_id, :slot, :spec_generation, :generation,"
        " 'requested', :now, :now)",
        row,
    )


async def get_replica(uow: UnitOfWork, replica_id: uuid.UUID, *, lock: bool = False) -> Any:
    query = "SELECT * FROM replicas WHERE replica_id = :id"
    return await uow.fetch_one(
        query + _LOCK if lock else query,
        {"id": replica_id},
    )


async def update_replica(uow: UnitOfWork, replica_id: uuid.UUID, **fields: Any) -> None:
    assert fields.keys() <= _REPLICA_UPDATES, fields.keys() - _REPLICA_UPDATES
    sets = ", ".join(f"{k} = :{k}" for k in fields)
    await uow.execute(
        f"UPDATE replicas SET {sets} WHERE replica_id = :replica_id",  # noqa: S608
        {**fields, "replica_id": replica_id},
    )


async def replica_endpoints(
    uow: UnitOfWork, instance_id: uuid.UUID, states: tuple[str, ...] = ("ready",)
) -> list[Any]:
    """The instance's replicas in these states with where their agents answer (the port
    proxy: ready ones; logs: any with an allocation)."""
    return await uow.fetch_all(
        "SELECT r.replica_id, r.allocation_id, r.state, n.name AS node_name, n.agent_url"
        " FROM replicas r JOIN nodes n ON n.node_id = r.node_id"
        " WHERE r.instance_id = :id AND r.state = ANY(:states) AND r.allocation_id IS NOT NULL"
        " AND n.agent_url IS NOT NULL ORDER BY r.slot",
        {"id": instance_id, "states": list(states)},
    )


# ----------------------------------------------------------------------------- signing keys

_KEYS_LOCK = 7_311_042_001  # one replica creates the first key


async def lock_keys(uow: UnitOfWork) -> None:
    await uow.execute("SELECT pg_advisory_xact_lock(:k)", {"k": _KEYS_LOCK})


async def live_keys(uow: UnitOfWork) -> list[Any]:
    return await uow.fetch_all(
        "SELECT id, private_key, encrypted FROM signing_keys WHERE retired_at IS NULL"
        " ORDER BY created_at"
    )


async def add_key(uow: UnitOfWork, kid: str, pem: bytes, encrypted: bool, at: dt.datetime) -> None:
    await uow.execute(
        "INSERT INTO signing_keys (id, private_key, encrypted, created_at)"
        " VALUES (:id, :pem, :enc, :at)",
        {"id": kid, "pem": pem, "enc": encrypted, "at": at},
    )
