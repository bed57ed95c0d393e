"""gpuaas's HTTP routes (behind the gateway at /v1/gpu). Every route under
/tenants/{t}/projects/{p} makes one call, `app.projects.authorize`, with its permission
(`workload.read` or `workload.manage`, domain/access.py): another tenant, another project or
a project gpuaas has not projected from iam answers 404, a lower role 403. Node and quota
administration is operator only; the node agent's sync call carries its node credential."""

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from gpuaas.api.schemas import (
    AllocationCreate,
    AllocationOut,
    AllocationPage,
    BundleOut,
    DesiredAllocation,
    DesiredState,
    InstanceOut,
    LaunchPolicyIn,
    LaunchPolicyOut,
    NodeOut,
    NodeRegister,
    NodeRegistered,
    NodeSync,
    ProfileAvailability,
    QuotaIn,
    QuotaOut,
    SkuOut,
    WorkloadRuntime,
)
from gpuaas.app.allocations import (
    AllocationOutcome,
    AllocationView,
    CreateAllocation,
    create_allocation,
    get_allocation,
    list_allocations,
    release_allocation,
)
from gpuaas.app.launch_gate import desired_bundles, get_required_channel, set_required_channel
from gpuaas.app.nodes import (
    GpuInventory,
    authenticate_node,
    desired_ids,
    list_nodes,
    register_node,
    set_node_state,
    sync_node,
)
from gpuaas.app.projects import authorize
from gpuaas.app.quotas import availability, get_quota, set_quota
from gpuaas.app.wakeups import NodeWakeups, differs, hold_until_changed
from gpuaas.domain.access import Action
from gpuaas.domain.allocations import Allocation
from gpuaas.domain.catalog import SKUS
from gpuaas.domain.launch_gate import BundleRequest
from gpuaas.domain.nodes import NodeState
from gpuaas.settings import GpuaasSettings
from platformkit.auth import Principal, bearer_token
from platformkit.db import Database
from platformkit.errors import PROBLEM_JSON, NotFound, Problem
from platformkit.http import json_reply, problem_reply, respond
from platformkit.idempotency import StoredResponse, check_key


def _settings(state: State) -> GpuaasSettings:
    return state.gpuaas_settings


async def _held_sync(
    db: Database,
    wakeups: NodeWakeups,
    node_id: uuid.UUID,
    observed: dict[str, str],
    settings: GpuaasSettings,
    activity: dict[str, dt.datetime] | None = None,
    failures: dict[str, str] | None = None,
    readiness: dict[str, str] | None = None,
    readiness_reasons: dict[str, str] | None = None,
) -> list[tuple[Allocation, list[Any]]]:
    """Sync (a heartbeat); when the agent has nothing to do, wait for a change of the node's
    desired state (or the hold to pass) and sync again (the second heartbeat)."""
    async with wakeups.watching(node_id) as changed:
        desired = await sync_node(
            db, node_id, observed, settings, activity, failures, readiness, readiness_reasons
        )
        if differs({str(a.id) for a, _ in desired}, observed):
            return desired
        changed.clear()  # our own transitions notified too; the first check re-reads

        async def differs_now() -> bool:
            return differs(await desired_ids(db, node_id), observed)

        await hold_until_changed(changed, settings.node_sync_hold_s, differs_now)
    return await sync_node(db, node_id, observed, settings)


def _instances(rows: list[Any]) -> list[InstanceOut]:
    return [
        InstanceOut(
            gpu_index=r["gpu_index"],
            device_uuid=r["device_uuid"],
            start=r["start"],
            memory_slices=r["memory"],
            compute_slices=r["compute"],
            profile_id=r["profile_id"],
        )
        for r in rows
    ]


def _out(view: AllocationView) -> AllocationOut:
    a = view.allocation
    return AllocationOut(
        id=a.id,
        tenant_id=a.tenant_id,
        project_id=a.project_id,
        sku=a.sku,
        mig_profile=a.mig_profile,
        count=a.count,
        state=a.state.value,
        price_key=SKUS[a.sku].price_key(a.mig_profile),
        created_at=a.created_at,
        updated_at=a.updated_at,
        instances=_instances(view.instances),
        node_id=a.node_id,
        reason=a.reason,
        running_since=a.running_since,
        idle_stop_after_s=a.idle_stop_after_s,
        last_active_at=a.last_active_at,
        bundle=BundleOut(
            tenant_id=a.bundle.tenant_id,
            app=a.bundle.app,
            version=a.bundle.version,
            digest=a.bundle.digest,
            channel=a.bundle.channel,
            yanked=view.yanked,
            refusal=view.refusal,
        )
        if a.bundle
        else None,
        replica_id=a.replica.replica_id if a.replica else None,
        instance_id=a.replica.instance_id if a.replica else None,
        readiness=a.readiness,
        readiness_reason=a.readiness_reason,
    )


def encode_outcome(instance: str) -> Callable[[AllocationOutcome], StoredResponse]:
    """A scheduled allocation answers 201 with it; a recorded rejection answers its problem
    (both are what a repeated Idempotency-Key replays)."""

    def encode(outcome: AllocationOutcome) -> StoredResponse:
        if outcome.rejection is not None:
            return problem_reply(outcome.rejection, instance)
        return json_reply(_out(outcome.view))

    return encode


class AllocationController(Controller):
    path = "/v1/gpu/tenants/{tenant_id:uuid}/projects/{project_id:uuid}"
    tags = ["allocations"]

    @post(
        "/allocations",
        operation_id="createAllocation",
        status_code=201,
        responses={
            201: ResponseSpec(
                AllocationOut, description="The allocation, as requested", generate_examples=False
            ),
            402: ResponseSpec(
                Problem,
                description="The money gate (it fails closed): no balance known for the tenant"
                " yet (balance-unknown), or its balance is exhausted or lasts less than the"
                " minimum runway (balance-exhausted)",
                media_type=PROBLEM_JSON,
                generate_examples=False,
            ),
            409: ResponseSpec(
                Problem,
                description="No known price for the request's price key (price-unknown), no"
                " capacity (no-capacity) or the project's quota exceeded (quota-exceeded)",
                media_type=PROBLEM_JSON,
                generate_examples=False,
            ),
            422: ResponseSpec(
                Problem,
                description="Invalid request, or the launch gate refused the named bundle"
                " (type bundle-<reason>: unknown-release, manifest-digest, yanked, unsigned,"
                " untrusted, revoked, expired, below-threshold, unpromoted)",
                media_type=PROBLEM_JSON,
                generate_examples=False,
            ),
        },
    )
    async def create(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        data: AllocationCreate,
        db: Database,
        state: State,
        principal: Principal,
        request: Request[Any, Any, Any],
        idempotency_key: Annotated[str | None, Parameter(header="Idempotency-Key")] = None,
    ) -> Response[bytes]:
        await authorize(db, principal, Action.WORKLOAD_MANAGE, tenant_id, project_id, launch=True)
        reply = await create_allocation(
            db,
            CreateAllocation(
                tenant_id,
                project_id,
                data.sku,
                data.mig_profile,
                data.count,
                check_key(idempotency_key),
                data.idle_stop_after_s,
                BundleRequest(
                    data.bundle.app,
                    data.bundle.version,
                    data.bundle.digest,
                    platform=data.bundle.namespace == "platform",
                )
                if data.bundle
                else None,
            ),
            _settings(state),
            encode_outcome(request.url.path),
        )
        return respond(reply)

    @get("/allocations", operation_id="listAllocations")
    async def index(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        db: Database,
        principal: Principal,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
        after: uuid.UUID | None = None,
    ) -> AllocationPage:
        await authorize(db, principal, Action.WORKLOAD_READ, tenant_id, project_id)
        views = await list_allocations(db, tenant_id, project_id, limit, after)
        next_after = views[-1].allocation.id if len(views) == limit else None
        return AllocationPage(items=[_out(v) for v in views], next_after=next_after)

    @get("/allocations/{allocation_id:uuid}", operation_id="getAllocation")
    async def retrieve(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        allocation_id: uuid.UUID,
        db: Database,
        principal: Principal,
    ) -> AllocationOut:
        await authorize(db, principal, Action.WORKLOAD_READ, tenant_id, project_id)
        view = await get_allocation(db, allocation_id)
        _same_scope(view.allocation, tenant_id, project_id)
        return _out(view)

    @post(
        "/allocations/{allocation_id:uuid}/release",
        operation_id="releaseAllocation",
        status_code=202,
    )
    async def release(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        allocation_id: uuid.UUID,
        db: Database,
        state: State,
        principal: Principal,
    ) -> AllocationOut:
        """Idempotent by nature: releasing a releasing allocation changes nothing."""
        await authorize(db, principal, Action.WORKLOAD_MANAGE, tenant_id, project_id)
        view = await release_allocation(
            db,
            allocation_id,
            _settings(state),
            lambda a: _same_scope(a, tenant_id, project_id),
        )
        return _out(view)

    @get("/quota", operation_id="getQuota")
    async def quota(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        db: Database,
        state: State,
        principal: Principal,
    ) -> QuotaOut:
        await authorize(db, principal, Action.WORKLOAD_READ, tenant_id, project_id)
        return await _quota(db, tenant_id, project_id, _settings(state))

    @put("/quota", operation_id="setQuota")
    async def put_quota(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        data: QuotaIn,
        db: Database,
        state: State,
        principal: Principal,
    ) -> QuotaOut:
        principal.require_operator()
        await authorize(db, principal, Action.WORKLOAD_MANAGE, tenant_id, project_id)
        await set_quota(db, tenant_id, project_id, data.max_compute_slices)
        return await _quota(db, tenant_id, project_id, _settings(state))

    @get("/launch-policy", operation_id="getLaunchPolicy")
    async def launch_policy(
        self, tenant_id: uuid.UUID, project_id: uuid.UUID, db: Database, principal: Principal
    ) -> LaunchPolicyOut:
        """The channel a bundle named by a launch in the project must be promoted to (the
        launch gate, docs/gpuaas.md); stable unless set."""
        await authorize(db, principal, Action.WORKLOAD_READ, tenant_id, project_id)
        channel, configured = await get_required_channel(db, tenant_id, project_id)
        return LaunchPolicyOut(
            tenant_id=tenant_id,
            project_id=project_id,
            required_channel=channel,
            configured=configured,
        )

    @put("/launch-policy", operation_id="setLaunchPolicy")
    async def put_launch_policy(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        data: LaunchPolicyIn,
        db: Database,
        principal: Principal,
    ) -> LaunchPolicyOut:
        """Tenant owners and admins, a project's admins: which channel may run here."""
        await authorize(db, principal, Action.LAUNCH_POLICY_MANAGE, tenant_id, project_id)
        await set_required_channel(
            db, tenant_id, project_id, data.required_channel, principal.subject
        )
        return LaunchPolicyOut(
            tenant_id=tenant_id,
            project_id=project_id,
            required_channel=data.required_channel,
            configured=True,
        )


async def _quota(
    db: Database, tenant_id: uuid.UUID, project_id: uuid.UUID, settings: GpuaasSettings
) -> QuotaOut:
    limit, in_use = await get_quota(db, tenant_id, project_id, settings)
    return QuotaOut(
        tenant_id=tenant_id, project_id=project_id, max_compute_slices=limit, in_use=in_use
    )


def _same_scope(a: Allocation, tenant_id: uuid.UUID, project_id: uuid.UUID) -> None:
    if a.tenant_id != tenant_id or a.project_id != project_id:
        raise NotFound(f"allocation {a.id} not found")


class SkuController(Controller):
    path = "/v1/gpu/skus"
    tags = ["skus"]

    @get("/", operation_id="listSkus")
    async def index(self, db: Database, principal: Principal) -> list[SkuOut]:
        # Any authenticated caller may see the catalog and what is free.
        del principal
        free = await availability(db)
        out = []
        for sku in SKUS.values():
            counts = free.get(sku.key, {"total": 0, "free": 0, "profiles": {}})
            out.append(
                SkuOut(
                    key=sku.key,
                    name=sku.name,
                    memory_gb=sku.memory_gb,
                    mig_capable=sku.mig_capable,
                    price_key=sku.price_key(None),
                    gpus_total=counts["total"],
                    gpus_free=counts["free"],
                    profiles=[
                        ProfileAvailability(
                            name=p.name,
                            profile_id=p.profile_id,
                            compute_slices=p.compute,
                            memory_slices=p.memory,
                            max_per_gpu=p.shape.max_per_gpu,
                            valid_starts=list(p.shape.starts),
                            price_key=sku.price_key(p.name),
                            available=counts["profiles"].get(p.profile_id, 0),
                        )
                        for p in sku.profiles
                    ],
                )
            )
        return out


def _node_out(n: Any) -> NodeOut:
    return NodeOut(
        id=n["id"],
        name=n["name"],
        provider=n["provider"],
        state=n["state"],
        gpu_count=n.get("gpu_count", 0) or 0,
        last_heartbeat_at=n["last_heartbeat_at"],
        sku=n.get("sku"),
    )


class NodeController(Controller):
    path = "/v1/gpu/nodes"
    tags = ["nodes"]

    @get("/", operation_id="listNodes")
    async def index(self, db: Database, principal: Principal) -> list[NodeOut]:
        principal.require_operator()
        return [_node_out(dict(n)) for n in await list_nodes(db)]

    @post("/register", operation_id="registerNode", status_code=201)
    async def register(
        self, data: NodeRegister, db: Database, principal: Principal
    ) -> NodeRegistered:
        """A node agent registers with the bootstrap (operator) token and receives its own
        node credential for every later call."""
        principal.require_operator()
        reg = await register_node(
            db,
            data.name,
            data.provider,
            data.agent_url,
            [GpuInventory(g.index, g.sku, g.device_uuid) for g in data.gpus],
        )
        return NodeRegistered(node_id=reg.node_id, credential=reg.credential)

    @post("/{node_id:uuid}/sync", operation_id="syncNode", status_code=200)
    async def sync(
        self,
        node_id: uuid.UUID,
        data: NodeSync,
        db: Database,
        state: State,
        request: Request[Any, Any, Any],
    ) -> DesiredState:
        """Heartbeat + observed state in, desired state out. Authorized by the node
        credential (not a user principal)."""
        await authenticate_node(db, node_id, bearer_token(request))
        settings = _settings(state)
        wakeups = getattr(state, "node_wakeups", None)
        if not data.hold or wakeups is None:
            desired = await sync_node(
                db, node_id, data.allocations, settings, data.activity, data.failures,
                data.readiness, data.readiness_reasons,
            )  # fmt: skip
        else:
            desired = await _held_sync(
                db, wakeups, node_id, data.allocations, settings, data.activity, data.failures,
                data.readiness, data.readiness_reasons,
            )  # fmt: skip
        bundles = await desired_bundles(db, [a for a, _ in desired])
        return DesiredState(
            node_id=node_id,
            allocations=[
                DesiredAllocation(
                    id=a.id,
                    sku=a.sku,
                    mig_profile=a.mig_profile,
                    state=a.state.value,
                    instances=_instances(rows),
                    bundle=bundles.get(a.id),
                    runtime=msgspec.convert(a.runtime, WorkloadRuntime) if a.runtime else None,
                )
                for a, rows in desired
            ],
        )

    async def _set(
        self,
        node_id: uuid.UUID,
        target: NodeState,
        db: Database,
        state: State,
        principal: Principal,
    ) -> NodeOut:
        principal.require_operator()
        return _node_out(dict(await set_node_state(db, node_id, target, _settings(state))))

    @post("/{node_id:uuid}/cordon", operation_id="cordonNode", status_code=200)
    async def cordon(
        self, node_id: uuid.UUID, db: Database, state: State, principal: Principal
    ) -> NodeOut:
        return await self._set(node_id, NodeState.CORDONED, db, state, principal)

    @post("/{node_id:uuid}/uncordon", operation_id="uncordonNode", status_code=200)
    async def uncordon(
        self, node_id: uuid.UUID, db: Database, state: State, principal: Principal
    ) -> NodeOut:
        return await self._set(node_id, NodeState.READY, db, state, principal)

    @post("/{node_id:uuid}/drain", operation_id="drainNode", status_code=200)
    async def drain(
        self, node_id: uuid.UUID, db: Database, state: State, principal: Principal
    ) -> NodeOut:
        return await self._set(node_id, NodeState.DRAINING, db, state, principal)
