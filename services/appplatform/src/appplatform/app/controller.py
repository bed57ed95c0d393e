"""The instance controller: level-triggered reconcile of an instance's desired state against
what its replicas are observed doing (domain/controller.py decides; this applies).

`reconcile(uow, instance_id)` locks the instance row, reads its replicas, the tenant's
status and the release, asks `plan`, then in the same transaction records every new
replica (its id first), writes the `appplatform.replica.requested` / `stop_requested`
commands and the `appplatform.instance.<state>` event to the outbox, and stores the state,
conditions and observed generation. Run again on the same state it decides nothing new.

It runs (1) right after a route changes an instance and after every observed allocation
event of one of its replicas (in the consumer's transaction), and (2) from a job loop over
every live instance, every `interval_s` or when woken: a missed trigger is made good by the
next pass.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from typing import Any

import msgspec

from appplatform.app.events import EVENTS
from appplatform.domain import instance_machine as machine
from appplatform.domain.controller import InstanceView, Plan, ReplicaView, plan
from appplatform.store import repository as repo
from gpucloud_contracts.events import appplatform as ev
from gpucloud_manifest import Manifest
from platformkit.db import Database, UnitOfWork

log = logging.getLogger(__name__)

CONTROLLER = "controller"


def _json(value: Any) -> Any:
    return msgspec.json.decode(value) if isinstance(value, (str, bytes)) else value


def manifest_of(row: Any) -> Manifest:
    return msgspec.convert(_json(row["manifest"]), Manifest)


def instance_event(
    row: Any, *, previous_state: str | None = None, actor: str | None = None
) -> ev.InstanceChanged:
    own = row["app_tenant_id"] == row["tenant_id"]
    return ev.InstanceChanged(
        instance_id=row["instance_id"],
        tenant_id=row["tenant_id"],
        project_id=row["project_id"],
        name=row["name"],
        app=row["app"],
        app_tenant_id=None if own else row["app_tenant_id"],
        version=row["version"],
        manifest_digest=row["manifest_digest"],
        generation=row["generation"],
        observed_generation=row["observed_generation"],
        state=row["state"],
        previous_state=previous_state,
        reason=row["reason"],
        replicas=row["replicas"],
        ready_replicas=row["ready_replicas"],
        actor=actor,
        occurred_at=row["updated_at"],
    )


def runtime_of(manifest: Manifest, env: dict[str, str]) -> ev.Runtime:
    probe = manifest.probe
    target = manifest.port_named(probe.port) if probe is not None else None
    return ev.Runtime(
        command=list(manifest.command),
        env=dict(env) or None,
        ports=[
            ev.Port(name=p.name, port=p.port, protocol=p.protocol, expose=p.expose)
            for p in manifest.ports
        ],
        probe=None
        if probe is None or target is None
        else ev.Probe(
            port=target.port,
            path=probe.path,
            interval_s=probe.interval_s,
            timeout_s=probe.timeout_s,
            initial_delay_s=probe.initial_delay_s,
            failure_threshold=probe.failure_threshold,
            headers=dict(probe.headers) or None,
        ),
    )


def replica_request(row: Any, replica_id: uuid.UUID, now: dt.datetime) -> ev.ReplicaRequest:
    manifest = manifest_of(row)
    resources = _json(row["resources"])
    return ev.ReplicaRequest(
        replica_id=replica_id,
        instance_id=row["instance_id"],
        tenant_id=row["tenant_id"],
        project_id=row["project_id"],
        generation=row["generation"],
        bundle=ev.BundleRef(
            tenant_id=row["app_tenant_id"],
            app=row["app"],
            version=row["version"],
            manifest_digest=row["manifest_digest"],
        ),
        resources=ev.ReplicaResources(
            sku=resources["sku"], count=resources["count"], mig_profile=resources.get("mig_profile")
        ),
        runtime=runtime_of(manifest, _json(row["env"])),
        idle_stop_after_s=manifest.idle_stop_after_s,
        actor=row["created_by"],
        occurred_at=now,
    )


def _view(row: Any) -> InstanceView:
    return InstanceView(
        state=row["state"],
        replicas=row["replicas"],
        spec_generation=row["spec_generation"],
        desired_state=row["desired_state"],
        stop_reason=row["stop_reason"],
        crash_count=row["crash_count"],
    )


def _replica(row: Any) -> ReplicaView:
    return ReplicaView(
        replica_id=row["replica_id"],
        slot=row["slot"],
        spec_generation=row["spec_generation"],
        state=row["state"],
        outcome=row["outcome"],
        reason=row["reason"],
        unready_since=row["unready_since"],
    )


async def reconcile(
    uow: UnitOfWork, instance_id: uuid.UUID, now: dt.datetime | None = None
) -> Plan | None:
    """One reconcile of one instance, in the caller's transaction (it commits)."""
    now = now or dt.datetime.now(dt.UTC)
    row = await repo.get_instance(uow, instance_id, lock=True)
    if row is None:
        return None
    replicas = await repo.replicas_of(uow, instance_id)
    release = await repo.find_release(uow, row["app_tenant_id"], row["app"], row["version"])
    decided = plan(
        _view(row),
        [_replica(r) for r in replicas],
        now,
        tenant_suspended=await repo.tenant_status(uow, row["tenant_id"]) == "suspended",
        release_yanked=release is None or bool(release["yanked"]),
    )
    commands: list[Any] = []
    for slot in decided.requests:
        replica_id = uuid.uuid4()
        await repo.insert_replica(
            uow,
            {
                "replica_id": replica_id,
                "instance_id": instance_id,
                "slot": slot,
                "spec_generation": row["spec_generation"],
                "generation": row["generation"],
                "now": now,
            },
        )
        commands.append(
            EVENTS.event(
                "appplatform.replica.requested",
                subject=str(instance_id),
                payload=replica_request(row, replica_id, now),
                tenant=str(row["tenant_id"]),
                actor=CONTROLLER,
            )
        )
    for replica_id, reason in decided.stops:
        await repo.update_replica(uow, replica_id, state="stopping", reason=reason, updated_at=now)
        commands.append(
            EVENTS.event(
                "appplatform.replica.stop_requested",
                subject=str(instance_id),
                payload=ev.ReplicaStop(
                    replica_id=replica_id,
                    instance_id=instance_id,
                    tenant_id=row["tenant_id"],
                    project_id=row["project_id"],
                    reason=reason,
                    occurred_at=now,
                ),
                tenant=str(row["tenant_id"]),
                actor=CONTROLLER,
            )
        )
    current = machine.State(row["state"])
    target = decided.target
    changes: dict[str, Any] = {}
    if target is not current:
        machine.transition(current, target)  # refuses what the table does not allow
        changes["state"] = target.value
        if decided.reason is not None:
            changes["reason"] = decided.reason
    ready = decided.observed.ready if target in machine.RUNNING else 0
    if ready != row["ready_replicas"]:
        changes["ready_replicas"] = ready
    if decided.crash_count != row["crash_count"]:
        changes["crash_count"] = decided.crash_count
    if row["observed_generation"] != row["generation"] and target not in machine.TERMINAL:
        changes["observed_generation"] = row["generation"]
    elif target in machine.TERMINAL and current not in machine.TERMINAL:
        changes["observed_generation"] = row["generation"]
    conditions = machine.conditions(
        _json(row["conditions"]),
        target,
        decided.observed,
        row["generation"],
        changes.get("reason", row["reason"]),
        now,
    )
    if [(c["type"], c["status"], c["reason"], c["message"]) for c in conditions] != [
        (c["type"], c["status"], c["reason"], c["message"]) for c in _json(row["conditions"])
    ] or "observed_generation" in changes:
        changes["conditions"] = msgspec.json.encode(conditions).decode()
    if changes:
        changes["updated_at"] = now
        row = await repo.update_instance(uow, instance_id, **changes)
    if target is not current:
        commands.append(
            EVENTS.event(
                f"appplatform.instance.{target.value}",
                subject=str(instance_id),
                payload=instance_event(row, previous_state=current.value, actor=CONTROLLER),
                tenant=str(row["tenant_id"]),
                actor=CONTROLLER,
            )
        )
    if commands:
        await EVENTS.add_events(uow, commands)
    return decided


class Controller:
    """The job loop: every live instance each `interval_s`, sooner when woken (a route
    changed one). Each instance is reconciled in its own transaction."""

    def __init__(self, interval_s: float = 5.0, batch: int = 500) -> None:
        self.interval_s = interval_s
        self.batch = batch
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def pass_once(self, db: Database) -> int:
        async with db.unit_of_work() as uow:
            ids = await repo.live_instance_ids(uow, self.batch)
        for instance_id in ids:
            try:
                async with db.unit_of_work() as uow:
                    await reconcile(uow, instance_id)
                    await uow.commit()
            except Exception:
                log.exception("reconcile of instance %s failed", instance_id)
        return len(ids)

    async def run(self, runtime: Any) -> None:
        db = runtime.database
        while True:
            self._wake.clear()
            await self.pass_once(db)
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            except TimeoutError:
                pass
