"""The controller's observed state: gpuaas's allocation events (gpuaas.allocation.v1, an
inbox consumer). Only events that name a replica (`replica`) concern appplatform; others
are skipped. Each moves the replica's record (domain.controller.observe: never backwards,
a stale or repeated event changes nothing) and reconciles its instance in the same
transaction, so a lost or refused replica is replaced (or the instance fails) at once.

An allocation released for idle stop (`reason` idle_stop) stops its whole instance (the
manifest's idle stop), rather than being replaced.
"""

from __future__ import annotations

import logging

import msgspec

from appplatform.app.controller import reconcile
from appplatform.domain.controller import observe
from appplatform.store import repository as repo
from gpucloud_contracts.events.gpuaas import AllocationChanged
from platformkit.consumers import Handler
from platformkit.db import UnitOfWork
from platformkit.envelope import CloudEvent

log = logging.getLogger(__name__)


def allocation_handler() -> Handler:
    async def apply_allocation_event(event: CloudEvent, uow: UnitOfWork) -> None:
        allocation = msgspec.json.decode(event.data, type=AllocationChanged)
        owner = allocation.replica
        if owner is None:
            return
        # the instance first, as the routes and the controller lock it (then its replicas)
        instance = await repo.get_instance(uow, owner.instance_id, lock=True)
        replica = await repo.get_replica(uow, owner.replica_id, lock=True)
        if instance is None or replica is None or replica["instance_id"] != owner.instance_id:
            log.warning("allocation %s names an unknown replica", allocation.allocation_id)
            return
        seen = observe(replica["state"], event.type)
        if seen is not None:
            fields: dict = {"state": seen.state, "updated_at": allocation.occurred_at}
            if seen.outcome is not None:
                fields["outcome"] = seen.outcome
                if seen.outcome != "stopped":
                    fields["reason"] = allocation.reason or seen.outcome
            if seen.state == "unready":
                fields["unready_since"] = allocation.occurred_at
            elif seen.state == "ready":
                fields["unready_since"] = None
            fields["allocation_id"] = allocation.allocation_id
            if allocation.node_id is not None:
                fields["node_id"] = allocation.node_id
            await repo.update_replica(uow, owner.replica_id, **fields)
        if allocation.reason == "idle_stop" and event.type == "gpuaas.allocation.releasing":
            if instance["desired_state"] != "stopped":
                await repo.update_instance(
                    uow,
                    owner.instance_id,
                    desired_state="stopped",
                    stop_reason="idle_stop",
                    updated_at=allocation.occurred_at,
                )
        await reconcile(uow, owner.instance_id)

    return apply_allocation_event
