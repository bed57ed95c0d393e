"""Every SQL statement of registry. Functions take the use case's unit of work and never
commit; rows come back as mappings."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from platformkit.db import UnitOfWork

# ----------------------------------------------------------------------------- projects


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


# ----------------------------------------------------------------------------- apps


async def insert_app(uow: UnitOfWork, row: dict[str, Any]) -> Any:
    return await uow.fetch_one(
        "INSERT INTO apps (id, tenant_id, project_id, name, description, created_by)"
        " VALUES (:id, :tenant_id, :project_id, :name, :description, :created_by)"
        " ON CONFLICT (tenant_id, name) DO NOTHING RETURNING *",
        row,
    )


async def find_app(
    uow: UnitOfWork, tenant_id: uuid.UUID, project_id: uuid.UUID | None, name: str
) -> Any:
    """The app of the namespace; with a project, only if it belongs to that project."""
    return await uow.fetch_one(
        "SELECT * FROM apps WHERE tenant_id = :t AND name = :n"
        " AND (CAST(:p AS uuid) IS NULL OR project_id = :p)",
        {"t": tenant_id, "p": project_id, "n": name},
    )


async def list_apps(
    uow: UnitOfWork, tenant_id: uuid.UUID, project_id: uuid.UUID | None, limit: int, after: str
) -> list[Any]:
    return await uow.fetch_all(
        "SELECT * FROM apps WHERE tenant_id = :t AND (CAST(:p AS uuid) IS NULL OR project_id = :p)"
        " AND name > :after ORDER BY name LIMIT :limit",
        {"t": tenant_id, "p": project_id, "after": after, "limit": limit},
    )


# ----------------------------------------------------------------------------- blobs


async def find_artifact(uow: UnitOfWork, app_id: uuid.UUID, digest: str) -> Any:
    return await uow.fetch_one(
        "SELECT * FROM artifacts WHERE app_id = :a AND digest = :d", {"a": app_id, "d": digest}
    )


async def insert_artifact(
    uow: UnitOfWork, app_id: uuid.UUID, digest: str, size: int, actor: str
) -> None:
    await uow.execute(
        "INSERT INTO artifacts (app_id, digest, size, uploaded_by) VALUES (:a, :d, :s, :by)"
        " ON CONFLICT DO NOTHING",
        {"a": app_id, "d": digest, "s": size, "by": actor},
    )


async def artifacts(uow: UnitOfWork, app_id: uuid.UUID, digests: Sequence[str]) -> dict[str, int]:
    rows = await uow.fetch_all(
        "SELECT digest, size FROM artifacts WHERE app_id = :a AND digest = ANY(:d)",
        {"a": app_id, "d": list(digests)},
    )
    return {r["digest"]: r["size"] for r in rows}


# ----------------------------------------------------------------------------- bundles


async def insert_bundle(uow: UnitOfWork, row: dict[str, Any], blobs: list[dict[str, Any]]) -> None:
    created = await uow.execute(
        "INSERT INTO bundles (app_id, manifest_digest, manifest, media_type, artifact_type,"
        " total_size, app_manifest) VALUES (:app_id, :manifest_digest, :manifest, :media_type,"
        " :artifact_type, :total_size, CAST(:app_manifest AS jsonb)) ON CONFLICT DO NOTHING",
        row,
    )
    if created.rowcount:
        for blob in blobs:
            await uow.execute(
                "INSERT INTO bundle_blobs (app_id, manifest_digest, position, role, digest,"
                " size, media_type) VALUES (:app_id, :manifest_digest, :position, :role,"
                " :digest, :size, :media_type)",
                blob,
            )


async def bundle(uow: UnitOfWork, app_id: uuid.UUID, manifest_digest: str) -> Any:
    return await uow.fetch_one(
        "SELECT * FROM bundles WHERE app_id = :a AND manifest_digest = :d",
        {"a": app_id, "d": manifest_digest},
    )


async def bundle_blobs(uow: UnitOfWork, app_id: uuid.UUID, manifest_digest: str) -> list[Any]:
    return await uow.fetch_all(
        "SELECT * FROM bundle_blobs WHERE app_id = :a AND manifest_digest = :d ORDER BY position",
        {"a": app_id, "d": manifest_digest},
    )


# ----------------------------------------------------------------------------- versions


async def insert_version(uow: UnitOfWork, row: dict[str, Any]) -> Any:
    return await uow.fetch_one(
        "INSERT INTO versions (id, app_id, version, precedence, manifest_digest, published_by)"
        " VALUES (:id, :app_id, :version, :precedence, :manifest_digest, :published_by)"
        " ON CONFLICT DO NOTHING RETURNING *",
        row,
    )


async def find_version(
    uow: UnitOfWork, app_id: uuid.UUID, version: str, *, lock: bool = False
) -> Any:
    row = await uow.fetch_one(_VERSION, {"a": app_id, "v": version})
    if row is not None and lock:
        # Serialises statements, promotions and yanks of one version until commit. An
        # advisory lock, not FOR UPDATE: the row never changes, and the runtime role holds
        # no UPDATE privilege on versions (a row lock would need one).
        await uow.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(CAST(:id AS text), 0))",
            {"id": row["id"]},
        )
    return row


_VERSION = "SELECT * FROM versions WHERE app_id = :a AND version = :v"


async def find_version_by_precedence(uow: UnitOfWork, app_id: uuid.UUID, precedence: str) -> Any:
    return await uow.fetch_one(
        "SELECT * FROM versions WHERE app_id = :a AND precedence = :p",
        {"a": app_id, "p": precedence},
    )


async def list_versions(uow: UnitOfWork, app_id: uuid.UUID) -> list[Any]:
    return await uow.fetch_all(
        "SELECT v.*, coalesce(array_agg(p.channel) FILTER (WHERE p.action = 'promote'), '{}')"
        " AS channels, bool_or(p.action = 'yank') IS TRUE AS yanked"
        " FROM versions v LEFT JOIN promotions p ON p.version_id = v.id"
        " WHERE v.app_id = :a GROUP BY v.id",
        {"a": app_id},
    )


# ----------------------------------------------------------------------------- statements


async def insert_statement(uow: UnitOfWork, row: dict[str, Any]) -> Any:
    return await uow.fetch_one(
        "INSERT INTO statements (id, version_id, kind, predicate_type, evidence_kind, envelope,"
        " envelope_digest, signer_key_ids, attached_by) VALUES (:id, :version_id, :kind,"
        " :predicate_type, :evidence_kind, :envelope, :envelope_digest, :signer_key_ids,"
        " :attached_by) ON CONFLICT (version_id, envelope_digest) DO NOTHING RETURNING *",
        row,
    )


async def find_statement_by_digest(uow: UnitOfWork, version_id: uuid.UUID, digest: str) -> Any:
    return await uow.fetch_one(
        "SELECT * FROM statements WHERE version_id = :v AND envelope_digest = :d",
        {"v": version_id, "d": digest},
    )


async def statements(uow: UnitOfWork, version_id: uuid.UUID) -> list[Any]:
    return await uow.fetch_all(
        "SELECT * FROM statements WHERE version_id = :v ORDER BY attached_at, id",
        {"v": version_id},
    )


# ----------------------------------------------------------------------------- keys


async def insert_key(uow: UnitOfWork, row: dict[str, Any]) -> Any:
    return await uow.fetch_one(
        "INSERT INTO trusted_keys (id, tenant_id, key_id, public_key, name, status, created_by,"
        " expires_at) VALUES (:id, :tenant_id, :key_id, :public_key, :name, 'active',"
        " :created_by, :expires_at)"
        " ON CONFLICT (tenant_id, key_id) DO NOTHING RETURNING *",
        row,
    )


async def find_key(uow: UnitOfWork, tenant_id: uuid.UUID, key: uuid.UUID) -> Any:
    return await uow.fetch_one(
        "SELECT * FROM trusted_keys WHERE tenant_id = :t AND id = :k FOR UPDATE",
        {"t": tenant_id, "k": key},
    )


async def find_key_by_key_id(uow: UnitOfWork, tenant_id: uuid.UUID, key_id: str) -> Any:
    return await uow.fetch_one(
        "SELECT * FROM trusted_keys WHERE tenant_id = :t AND key_id = :k",
        {"t": tenant_id, "k": key_id},
    )


async def keys(uow: UnitOfWork, tenant_id: uuid.UUID) -> list[Any]:
    return await uow.fetch_all(
        "SELECT * FROM trusted_keys WHERE tenant_id = :t ORDER BY created_at, id",
        {"t": tenant_id},
    )


async def rotate_key(uow: UnitOfWork, key: uuid.UUID, successor: uuid.UUID) -> Any:
    return await uow.fetch_one(
        "UPDATE trusted_keys SET status = 'rotated', successor_id = :s, rotated_at = now()"
        " WHERE id = :k RETURNING *",
        {"k": key, "s": successor},
    )


async def revoke_key(uow: UnitOfWork, key: uuid.UUID, reason: str) -> Any:
    return await uow.fetch_one(
        "UPDATE trusted_keys SET status = 'revoked', revoked_at = now(), revocation_reason = :r"
        " WHERE id = :k RETURNING *",
        {"k": key, "r": reason},
    )


async def renew_key(uow: UnitOfWork, key: uuid.UUID, expires_at: dt.datetime | None) -> Any:
    return await uow.fetch_one(
        "UPDATE trusted_keys SET expires_at = :e WHERE id = :k RETURNING *",
        {"k": key, "e": expires_at},
    )


# ----------------------------------------------------------------------------- policies


async def upsert_policy(uow: UnitOfWork, row: dict[str, Any]) -> Any:
    return await uow.fetch_one(
        "INSERT INTO promotion_policies (tenant_id, channel, threshold, required_key_ids,"
        " required_evidence, updated_by) VALUES (:tenant_id, :channel, :threshold,"
        " :required_key_ids, :required_evidence, :updated_by)"
        " ON CONFLICT (tenant_id, channel) DO UPDATE SET threshold = EXCLUDED.threshold,"
        " required_key_ids = EXCLUDED.required_key_ids,"
        " required_evidence = EXCLUDED.required_evidence, updated_by = EXCLUDED.updated_by,"
        " updated_at = now() RETURNING *",
        row,
    )


async def policies(uow: UnitOfWork, tenant_id: uuid.UUID) -> list[Any]:
    return await uow.fetch_all(
        "SELECT * FROM promotion_policies WHERE tenant_id = :t", {"t": tenant_id}
    )


async def policy(uow: UnitOfWork, tenant_id: uuid.UUID, channel: str) -> Any:
    return await uow.fetch_one(
        "SELECT * FROM promotion_policies WHERE tenant_id = :t AND channel = :c",
        {"t": tenant_id, "c": channel},
    )


# ----------------------------------------------------------------------------- promotions


async def insert_promotion(uow: UnitOfWork, row: dict[str, Any]) -> Any:
    return await uow.fetch_one(
        "INSERT INTO promotions (id, version_id, action, channel, actor, actor_kind, reason,"
        " policy) VALUES (:id, :version_id, :action, :channel, :actor, :actor_kind, :reason,"
        " CAST(:policy AS jsonb)) RETURNING *",
        row,
    )


async def promotions(uow: UnitOfWork, version_id: uuid.UUID) -> list[Any]:
    return await uow.fetch_all(
        "SELECT * FROM promotions WHERE version_id = :v ORDER BY occurred_at, id",
        {"v": version_id},
    )


# ----------------------------------------------------------------------------- witness


async def witnessed(uow: UnitOfWork, origin: str, size: int) -> Any:
    return await uow.fetch_one(
        "SELECT size, root, note, log_key, previous_size, proof FROM witnessed_checkpoints"
        " WHERE origin = :o AND size = :s",
        {"o": origin, "s": size},
    )


async def witnessed_successors(uow: UnitOfWork, origin: str, size: int) -> list[Any]:
    return await uow.fetch_all(
        "SELECT size, root, note, log_key, previous_size, proof FROM witnessed_checkpoints"
        " WHERE origin = :o AND previous_size = :s",
        {"o": origin, "s": size},
    )


async def witness_key(uow: UnitOfWork, origin: str) -> str | None:
    """The log key the first witnessed checkpoint of `origin` was signed with."""
    row = await uow.fetch_one(
        "SELECT log_key FROM witnessed_checkpoints WHERE origin = :o"
        " ORDER BY witnessed_at, size LIMIT 1",
        {"o": origin},
    )
    return row["log_key"] if row else None


async def add_witnessed(
    uow: UnitOfWork,
    *,
    origin: str,
    size: int,
    root: bytes,
    note: str,
    log_key: str,
    previous_size: int | None,
    proof: Sequence[str],
) -> None:
    await uow.execute(
        "INSERT INTO witnessed_checkpoints (origin, size, root, note, log_key, previous_size,"
        " proof) VALUES (:o, :s, :r, :n, :k, :p, :proof) ON CONFLICT DO NOTHING",
        {"o": origin, "s": size, "r": root, "n": note, "k": log_key, "p": previous_size,
         "proof": list(proof)},
    )  # fmt: skip


async def add_witness_conflict(
    uow: UnitOfWork, *, origin: str, size: int | None, note: str, kind: str, detail: str
) -> None:
    await uow.execute(
        "INSERT INTO witness_conflicts (origin, size, note, kind, detail)"
        " VALUES (:o, :s, :n, :k, :d)",
        {"o": origin, "s": size, "n": note, "k": kind, "d": detail},
    )


async def latest_witnessed(uow: UnitOfWork, origin: str | None) -> Any:
    return await uow.fetch_one(
        "SELECT origin, size, root, note, witnessed_at FROM witnessed_checkpoints"
        " WHERE (CAST(:o AS text) IS NULL OR origin = :o) ORDER BY size DESC LIMIT 1",
        {"o": origin},
    )


async def witness_conflicts(uow: UnitOfWork, limit: int) -> list[Any]:
    return await uow.fetch_all(
        "SELECT id, origin, size, note, kind, detail, seen_at FROM witness_conflicts"
        " ORDER BY id DESC LIMIT :l",
        {"l": limit},
    )
