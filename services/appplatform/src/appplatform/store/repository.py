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
    state: str,
    at: dt.datetime,
) -> None:
    await uow.execute(
        "INSERT INTO nodes (node_id, name, agent_url, state, updated_at)"
        " VALUES (:id, :name, :url, :state, :at)"
        " ON CONFLICT (node_id) DO UPDATE SET name = EXCLUDED.name,"
        " agent_url = COALESCE(EXCLUDED.agent_url, nodes.agent_url), state = EXCLUDED.state,"
        " updated_at = EXCLUDED.updated_at WHERE nodes.updated_at <= EXCLUDED.updated_at",
        {"id": node_id, "name": name, "url": agent_url, "state": state, "at": at},
    )


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
