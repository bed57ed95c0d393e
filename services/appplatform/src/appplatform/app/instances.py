"""App instances: launch (desired state recorded, generation 1, state pending), read,
change (generation + 1) and stop. Each change writes its `appplatform.instance.created` /
`updated` event in its transaction and reconciles the instance there too (the controller,
app/controller.py), so the first replica commands leave with it; the controller's loop
makes good anything a crash cut short.

Refusals name the field: `env.X` (undeclared, or required at launch and missing),
`version` / `channel` (not promoted, yanked), `resources.sku` / `resources.count` (outside
the manifest); an app the caller cannot see (another tenant's, or none) is 404.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import msgspec

from appplatform.app.controller import _json, instance_event, manifest_of, reconcile
from appplatform.app.events import EVENTS
from appplatform.app.schemas import (
    Condition,
    InstanceCreate,
    InstanceOut,
    InstancePatch,
    InstanceSpec,
    InstanceStatus,
    ReplicaOut,
)
from appplatform.domain import instance_machine as machine
from appplatform.domain.catalog import PLATFORM
from appplatform.domain.launch import Problem, resolve_env, resolve_resources
from appplatform.store import repository as repo
from platformkit.db import Database, UnitOfWork
from platformkit.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from platformkit.http import json_reply
from platformkit.idempotency import IdempotentRequest, StoredResponse, run_once


def _refuse(problems: list[Problem]) -> ValidationFailed:
    return ValidationFailed(
        "; ".join(f"{p.field}: {p.message}" for p in problems),
        errors=[FieldError(p.field, p.message) for p in problems],
    )


def instance_out(row: Any, replicas: list[Any]) -> InstanceOut:
    resources = _json(row["resources"])
    return InstanceOut(
        id=row["instance_id"],
        tenant_id=row["tenant_id"],
        project_id=row["project_id"],
        name=row["name"],
        generation=row["generation"],
        spec=InstanceSpec(
            app=row["app"],
            app_tenant_id=row["app_tenant_id"],
            version=row["version"],
            manifest_digest=row["manifest_digest"],
            replicas=row["replicas"],
            env=_json(row["env"]),
            sku=resources["sku"],
            count=resources["count"],
            mig_profile=resources.get("mig_profile"),
            channel=row["channel"],
            desired_state=row["desired_state"],
        ),
        status=InstanceStatus(
            state=row["state"],
            observed_generation=row["observed_generation"],
            ready_replicas=row["ready_replicas"],
            conditions=msgspec.convert(_json(row["conditions"]), list[Condition]),
            reason=row["reason"],
            replicas=[
                ReplicaOut(
                    replica_id=r["replica_id"],
                    slot=r["slot"],
                    generation=r["generation"],
                    state=r["state"],
                    allocation_id=r["allocation_id"],
                    node_id=r["node_id"],
                    reason=r["reason"],
                )
                for r in replicas
                if r["state"] != "gone"
            ],
        ),
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def _view(uow: UnitOfWork, row: Any) -> InstanceOut:
    return instance_out(row, await repo.replicas_of(uow, row["instance_id"]))


async def _pick_release(
    uow: UnitOfWork, tenant_id: uuid.UUID, app: str, data: InstanceCreate
) -> tuple[uuid.UUID, Any]:
    namespaces = {"platform": [PLATFORM], "tenant": [tenant_id]}.get(
        data.namespace or "", [tenant_id, PLATFORM]
    )
    namespace = None
    for candidate in namespaces:
        if await repo.app_known(uow, candidate, app):
            namespace = candidate
            break
    if namespace is None:
        raise NotFound(f"app {app} not found")
    launchable = await repo.launchable_releases(uow, namespace, app)
    if data.version is not None:
        for release in launchable:
            if release["version"] == data.version:
                return namespace, release
        raise ValidationFailed.for_field(
            "version",
            f"{app} {data.version} is not a promoted, unyanked release with a valid manifest",
        )
    channel = data.channel or "stable"
    for release in launchable:  # newest first
        if channel in release["channels"]:
            return namespace, release
    raise ValidationFailed.for_field("channel", f"no release of {app} is promoted to {channel}")


@dataclasses.dataclass(frozen=True)
class Launch:
    tenant_id: uuid.UUID
    project_id: uuid.UUID
    app: str
    data: InstanceCreate
    actor: str
    idempotency_key: str | None

    @property
    def idempotency(self) -> IdempotentRequest | None:
        return IdempotentRequest.of(
            f"appplatform.instances:{self.project_id}",
            self.idempotency_key,
            [self.app, msgspec.to_builtins(self.data)],
        )


async def launch(db: Database, command: Launch, wake: Any = None) -> StoredResponse:
    data = command.data

    async def work(uow: UnitOfWork) -> InstanceOut:
        if await repo.tenant_status(uow, command.tenant_id) == "suspended":
            raise Forbidden(f"tenant {command.tenant_id} is suspended: it launches nothing new")
        namespace, release = await _pick_release(uow, command.tenant_id, command.app, data)
        manifest = manifest_of(release)
        env, problems = resolve_env(manifest, data.env)
        override = data.resources
        resources, more = resolve_resources(
            manifest.resources,
            override.sku if override else None,
            override.count if override else None,
            await repo.ready_node_skus(uow),
        )
        problems += more
        if problems:
            raise _refuse(problems)
        now = dt.datetime.now(dt.UTC)
        row = await repo.insert_instance(
            uow,
            {
                "instance_id": uuid.uuid4(),
                "tenant_id": command.tenant_id,
                "project_id": command.project_id,
                "name": data.name,
                "app_tenant_id": namespace,
                "app": command.app,
                "channel": None if data.version else (data.channel or "stable"),
                "version": release["version"],
                "version_id": release["version_id"],
                "manifest_digest": release["manifest_digest"],
                "manifest": msgspec.json.encode(manifest).decode(),
                "env": msgspec.json.encode(env).decode(),
                "resources": msgspec.json.encode(resources).decode(),
                "replicas": data.replicas or manifest.replicas,
                "conditions": "[]",
                "created_by": command.actor,
                "now": now,
            },
        )
        if row is None:
            raise Conflict(f"the project already has a live instance named {data.name}")
        await EVENTS.add_event(
            uow,
            "appplatform.instance.created",
            subject=str(row["instance_id"]),
            payload=instance_event(row),
            tenant=str(command.tenant_id),
        )
        await reconcile(uow, row["instance_id"], now)
        if wake is not None:
            uow.after_commit(wake)
        row = await repo.get_instance(uow, row["instance_id"])
        return await _view(uow, row)

    return await run_once(db, command.idempotency, work, lambda out: json_reply(out, 201))


async def _owned(
    uow: UnitOfWork, tenant_id: uuid.UUID, project_id: uuid.UUID, instance_id: uuid.UUID, lock=False
) -> Any:
    row = await repo.get_instance(uow, instance_id, lock=lock)
    if row is None or row["tenant_id"] != tenant_id or row["project_id"] != project_id:
        raise NotFound(f"instance {instance_id} not found")
    return row


async def get_instance(
    db: Database, tenant_id: uuid.UUID, project_id: uuid.UUID, instance_id: uuid.UUID
) -> InstanceOut:
    async with db.unit_of_work() as uow:
        return await _view(uow, await _owned(uow, tenant_id, project_id, instance_id))


async def list_instances(
    db: Database, tenant_id: uuid.UUID, project_id: uuid.UUID, limit: int, after: uuid.UUID | None
) -> list[InstanceOut]:
    async with db.unit_of_work() as uow:
        rows = await repo.list_instances(uow, tenant_id, project_id, limit, after)
        return [await _view(uow, r) for r in rows]


async def _apply_change(
    uow: UnitOfWork, instance_id: uuid.UUID, changes: dict[str, Any], wake: Any
) -> Any:
    """One change of the desired state: the row, `appplatform.instance.updated` through the
    outbox and a reconcile, all in the caller's transaction; the controller is woken after
    the commit. Returns the row as the reconcile left it."""
    row = await repo.update_instance(
        uow, instance_id, **changes, updated_at=dt.datetime.now(dt.UTC)
    )
    await EVENTS.add_event(
        uow,
        "appplatform.instance.updated",
        subject=str(instance_id),
        payload=instance_event(row),
        tenant=str(row["tenant_id"]),
    )
    await reconcile(uow, instance_id)
    if wake is not None:
        uow.after_commit(wake)
    return await repo.get_instance(uow, instance_id)


async def change_instance(
    db: Database,
    tenant_id: uuid.UUID,
    project_id: uuid.UUID,
    instance_id: uuid.UUID,
    patch: InstancePatch,
    wake: Any = None,
) -> InstanceOut:
    """Replicas, version and env; a change grows the generation, a change of version or env
    the spec generation too (the replicas are replaced). The same patch again changes
    nothing."""
    async with db.unit_of_work() as uow:
        row = await _owned(uow, tenant_id, project_id, instance_id, lock=True)
        if row["state"] in machine.TERMINAL or row["desired_state"] == "stopped":
            raise Conflict(f"instance {instance_id} is {row['state']}: launch a new one")
        changes: dict[str, Any] = {}
        respec = False
        manifest = manifest_of(row)
        if patch.version is not None and patch.version != row["version"]:
            launchable = await repo.launchable_releases(uow, row["app_tenant_id"], row["app"])
            release = next((r for r in launchable if r["version"] == patch.version), None)
            if release is None:
                raise ValidationFailed.for_field(
                    "version", f"{row['app']} {patch.version} is not a promoted, unyanked release"
                )
            manifest = manifest_of(release)
            changes.update(
                version=release["version"],
                version_id=release["version_id"],
                manifest_digest=release["manifest_digest"],
                manifest=msgspec.json.encode(manifest).decode(),
                channel=None,
            )
            respec = True
        current_env: dict[str, str] = _json(row["env"])
        given = (
            patch.env
            if patch.env is not None
            else {k: v for k, v in current_env.items() if k in manifest.env}
        )
        env, problems = resolve_env(manifest, given)
        if problems:
            raise _refuse(problems)
        if env != current_env:
            changes["env"] = msgspec.json.encode(env).decode()
            respec = True
        if patch.replicas is not None and patch.replicas != row["replicas"]:
            changes["replicas"] = patch.replicas
        if changes:
            generation = row["generation"] + 1
            changes["generation"] = generation
            if respec:
                changes["spec_generation"] = generation
            row = await _apply_change(uow, instance_id, changes, wake)
        out = await _view(uow, row)
        await uow.commit()
    return out


async def stop_instance(
    db: Database,
    tenant_id: uuid.UUID,
    project_id: uuid.UUID,
    instance_id: uuid.UUID,
    wake: Any = None,
) -> InstanceOut:
    """Ask every replica to stop (state stopping, then stopped once gpuaas released them).
    Idempotent: stopping a stopping or stopped instance changes nothing."""
    async with db.unit_of_work() as uow:
        row = await _owned(uow, tenant_id, project_id, instance_id, lock=True)
        if row["desired_state"] != "stopped" and row["state"] not in machine.TERMINAL:
            changes = {
                "desired_state": "stopped",
                "stop_reason": "user_stop",
                "generation": row["generation"] + 1,
            }
            row = await _apply_change(uow, instance_id, changes, wake)
        out = await _view(uow, row)
        await uow.commit()
    return out
