"""All of gpuaas's queries. Repositories flush through the unit of work; they never commit.
SQL built with f-strings only interpolates constant column lists (hence the S608 noqa)."""

import datetime as dt
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy.exc import IntegrityError

from gpuaas.domain.allocations import (
    HOLDS_CAPACITY,
    Allocation,
    AllocationState,
    LaunchedBundle,
    ReplicaRef,
)
from gpuaas.domain.geometry import Instance, Layout
from gpuaas.domain.nodes import NodeState
from gpuaas.domain.placement import Booking, GpuState, NodeCapacity
from gpuaas.domain.runway import PriceVersion
from platformkit.db import UnitOfWork
from platformkit.ids import uuid7

_LIVE = tuple(s.value for s in HOLDS_CAPACITY)
_ALLOCATION_COLUMNS = (
    "id, tenant_id, project_id, sku, mig_profile, count, state, created_at, updated_at,"
    " node_id, reason, running_since, usage_cursor, usage_sequence, release_attempts,"
    " next_release_at, idle_stop_after_s, last_active_at, bundle_tenant_id, bundle_app,"
    " bundle_version, bundle_digest, bundle_channel, replica_id, instance_id, runtime,"
    " readiness, readiness_reason"
)


class SliceTaken(Exception):
    """Another transaction booked one of the slices first (the database refused it)."""


def _allocation(row: Any) -> Allocation:
    return Allocation(
        id=row["id"],
        tenant_id=row["tenant_id"],
        project_id=row["project_id"],
        sku=row["sku"],
        mig_profile=row["mig_profile"],
        count=row["count"],
        state=AllocationState(row["state"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        node_id=row["node_id"],
        reason=row["reason"],
        running_since=row["running_since"],
        usage_cursor=row["usage_cursor"],
        usage_sequence=row["usage_sequence"],
        release_attempts=row["release_attempts"],
        next_release_at=row["next_release_at"],
        idle_stop_after_s=row["idle_stop_after_s"],
        last_active_at=row["last_active_at"],
        bundle=LaunchedBundle(
            row["bundle_tenant_id"],
            row["bundle_app"],
            row["bundle_version"],
            row["bundle_digest"],
            row["bundle_channel"],
        )
        if row["bundle_digest"] is not None
        else None,
        replica=ReplicaRef(row["replica_id"], row["instance_id"])
        if row["replica_id"] is not None
        else None,
        runtime=row["runtime"],
        readiness=row["readiness"],
        readiness_reason=row["readiness_reason"],
    )


class AllocationRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def add(self, allocation: Allocation, units: int) -> None:
        await self.uow.execute(
            f"INSERT INTO allocations ({_ALLOCATION_COLUMNS}, units) VALUES (:id, :tenant_id,"  # noqa: S608
            " :project_id, :sku, :mig_profile, :count, :state, :created_at, :updated_at,"
            " :node_id, :reason, :running_since, :usage_cursor, :usage_sequence,"
            " :release_attempts, :next_release_at, :idle_stop_after_s, :last_active_at,"
            " :bundle_tenant_id, :bundle_app, :bundle_version, :bundle_digest, :bundle_channel,"
            " :replica_id, :instance_id, CAST(:runtime AS jsonb), :readiness, :readiness_reason,"
            " :units)",
            {**_params(allocation), "units": units},
        )

    async def save(self, allocation: Allocation) -> None:
        await self.uow.execute(
            "UPDATE allocations SET state = :state, updated_at = :updated_at, node_id = :node_id,"
            " reason = :reason, running_since = :running_since, usage_cursor = :usage_cursor,"
            " usage_sequence = :usage_sequence, release_attempts = :release_attempts,"
            " next_release_at = :next_release_at, last_active_at = :last_active_at,"
            " readiness = :readiness, readiness_reason = :readiness_reason WHERE id = :id",
            _params(allocation),
        )

    async def get(self, allocation_id: uuid.UUID, *, lock: bool = False) -> Allocation | None:
        row = await self.uow.fetch_one(
            f"SELECT {_ALLOCATION_COLUMNS} FROM allocations WHERE id = :id"  # noqa: S608
            + (" FOR UPDATE" if lock else ""),
            {"id": allocation_id},
        )
        return _allocation(row) if row else None

    async def by_replica(self, replica_id: uuid.UUID, *, lock: bool = False) -> Allocation | None:
        """The allocation made for an app replica (at most one: replica_id is unique)."""
        row = await self.uow.fetch_one(
            f"SELECT {_ALLOCATION_COLUMNS} FROM allocations WHERE replica_id = :r"  # noqa: S608
            + (" FOR UPDATE" if lock else ""),
            {"r": replica_id},
        )
        return _allocation(row) if row else None

    async def list_for_project(
        self, tenant_id: uuid.UUID, project_id: uuid.UUID, limit: int, after: uuid.UUID | None
    ) -> list[Allocation]:
        rows = await self.uow.fetch_all(
            f"SELECT {_ALLOCATION_COLUMNS} FROM allocations"  # noqa: S608
            " WHERE tenant_id = :t AND project_id = :p"
            " AND (CAST(:after AS uuid) IS NULL OR id > CAST(:after AS uuid))"
            " ORDER BY id LIMIT :limit",
            {"t": tenant_id, "p": project_id, "after": after, "limit": limit},
        )
        return [_allocation(r) for r in rows]

    async def _lock(
        self, condition: str, params: dict[str, Any], limit: int = 10_000, *, skip_locked: bool
    ) -> list[Allocation]:
        """Allocations matching `condition` (one of the constant fragments below, values
        bound), locked in id order. Background sweeps skip rows another worker holds; a
        caller that must see every matching row (a node's desired state, a stop condition)
        waits for them."""
        rows = await self.uow.fetch_all(
            f"SELECT {_ALLOCATION_COLUMNS} FROM allocations WHERE {condition}"  # noqa: S608
            " ORDER BY id LIMIT :limit FOR UPDATE" + (" SKIP LOCKED" if skip_locked else ""),
            {**params, "limit": limit},
        )
        return [_allocation(r) for r in rows]

    async def lock_on_node(
        self, node_id: uuid.UUID, states: Iterable[AllocationState]
    ) -> list[Allocation]:
        """The node's allocations in `states`, waiting for rows another transaction holds
        (the metering sweep closing an interval): skipping one would drop it from the
        node's desired state and tear its workload down."""
        return await self._lock(
            "node_id = :n AND state = ANY(:s)",
            {"n": node_id, "s": [s.value for s in states]},
            skip_locked=False,
        )

    async def lock_of_tenant(
        self, tenant_id: uuid.UUID, states: Iterable[AllocationState]
    ) -> list[Allocation]:
        """The tenant's allocations in `states`, all of them (a stop condition must reach
        every running allocation)."""
        return await self._lock(
            "tenant_id = :t AND state = ANY(:s)",
            {"t": tenant_id, "s": [s.value for s in states]},
            skip_locked=False,
        )

    async def lock_release_retries_due(self, now: dt.datetime, limit: int) -> list[Allocation]:
        return await self._lock(
            "state = 'releasing' AND next_release_at <= :now",
            {"now": now},
            limit,
            skip_locked=True,
        )

    async def lock_usage_due(self, edge: dt.datetime, limit: int) -> list[Allocation]:
        """Running allocations whose usage cursor is a whole metering period behind."""
        return await self._lock(
            "state = 'running' AND usage_cursor <= :edge", {"edge": edge}, limit, skip_locked=True
        )

    async def lock_idle_candidates(self, now: dt.datetime, limit: int) -> list[Allocation]:
        """Running allocations with an idle policy whose last activity is that old (the
        query narrows; the domain's is_idle decides)."""
        return await self._lock(
            "state = 'running' AND idle_stop_after_s IS NOT NULL"
            " AND last_active_at <= CAST(:now AS timestamptz)"
            " - make_interval(secs => idle_stop_after_s)",
            {"now": now},
            limit,
            skip_locked=True,
        )

    async def units_in_use(self, tenant_id: uuid.UUID, project_id: uuid.UUID) -> int:
        row = await self.uow.fetch_one(
            "SELECT coalesce(sum(units), 0) AS n FROM allocations"
            " WHERE tenant_id = :t AND project_id = :p AND state = ANY(:live)",
            {"t": tenant_id, "p": project_id, "live": list(_LIVE)},
        )
        return int(row["n"])

    async def tenant_live_usage(self, tenant_id: uuid.UUID) -> list[tuple[str, str | None, int]]:
        """(sku, mig_profile, units of quantity) of the tenant's booked allocations: what it
        burns, or will as soon as they run."""
        rows = await self.uow.fetch_all(
            "SELECT sku, mig_profile, sum(count) AS quantity FROM allocations"
            " WHERE tenant_id = :t AND state IN ('scheduled', 'provisioning', 'running')"
            " GROUP BY sku, mig_profile",
            {"t": tenant_id},
        )
        return [(r["sku"], r["mig_profile"], int(r["quantity"])) for r in rows]

    async def book(self, allocation_id: uuid.UUID, bookings: list[Booking]) -> None:
        """Insert the instances and their (gpu, slice) rows inside a savepoint, so a lost
        race leaves the caller's transaction usable for a retry."""
        instance_rows = []
        slice_rows = []
        for b in bookings:
            iid = uuid7()
            i = b.instance
            instance_rows.append(
                {
                    "id": iid,
                    "a": allocation_id,
                    "g": b.gpu_id,
                    "p": i.profile_id,
                    "s": i.start,
                    "m": i.memory,
                    "c": i.compute,
                    "me": i.media_extension,
                }
            )
            slice_rows += [{"g": b.gpu_id, "s": s, "i": iid} for s in i.slices]
        try:
            async with self.uow.session.begin_nested():
                await self.uow.execute(
                    "INSERT INTO allocation_instances (id, allocation_id, gpu_id, profile_id,"
                    " start, memory, compute, media_extension) VALUES"
                    " (:id, :a, :g, :p, :s, :m, :c, :me)",
                    instance_rows,  # type: ignore[arg-type]
                )
                await self.uow.execute(
                    "INSERT INTO gpu_slices (gpu_id, slice, instance_id) VALUES (:g, :s, :i)",
                    slice_rows,  # type: ignore[arg-type]
                )
        except IntegrityError as exc:
            raise SliceTaken(str(exc.orig)) from exc

    async def free(self, allocation_id: uuid.UUID, now: dt.datetime) -> None:
        """Free the allocation's slices; its GPUs' capacity generation moves on."""
        await GenerationRepository(self.uow).bump_allocation(allocation_id)
        await self.uow.execute(
            "DELETE FROM gpu_slices WHERE instance_id IN (SELECT id FROM allocation_instances"
            " WHERE allocation_id = :a)",
            {"a": allocation_id},
        )
        await self.uow.execute(
            "UPDATE allocation_instances SET released_at = :now"
            " WHERE allocation_id = :a AND released_at IS NULL",
            {"a": allocation_id, "now": now},
        )

    async def instances(self, allocation_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Any]]:
        if not allocation_ids:
            return {}
        rows = await self.uow.fetch_all(
            "SELECT i.allocation_id, i.id, i.profile_id, i.start, i.memory, i.compute,"
            " g.index AS gpu_index, g.device_uuid FROM allocation_instances i"
            " JOIN gpus g ON g.id = i.gpu_id WHERE i.allocation_id = ANY(:ids)"
            " AND i.released_at IS NULL ORDER BY g.index, i.start",
            {"ids": list(allocation_ids)},
        )
        out: dict[uuid.UUID, list[Any]] = defaultdict(list)
        for r in rows:
            out[r["allocation_id"]].append(r)
        return out


def _params(a: Allocation) -> dict[str, Any]:
    return {
        "id": a.id,
        "tenant_id": a.tenant_id,
        "project_id": a.project_id,
        "sku": a.sku,
        "mig_profile": a.mig_profile,
        "count": a.count,
        "state": a.state.value,
        "created_at": a.created_at,
        "updated_at": a.updated_at,
        "node_id": a.node_id,
        "reason": a.reason,
        "running_since": a.running_since,
        "usage_cursor": a.usage_cursor,
        "usage_sequence": a.usage_sequence,
        "release_attempts": a.release_attempts,
        "next_release_at": a.next_release_at,
        "idle_stop_after_s": a.idle_stop_after_s,
        "last_active_at": a.last_active_at,
        "bundle_tenant_id": a.bundle.tenant_id if a.bundle else None,
        "bundle_app": a.bundle.app if a.bundle else None,
        "bundle_version": a.bundle.version if a.bundle else None,
        "bundle_digest": a.bundle.digest if a.bundle else None,
        "bundle_channel": a.bundle.channel if a.bundle else None,
        "replica_id": a.replica.replica_id if a.replica else None,
        "instance_id": a.replica.instance_id if a.replica else None,
        "runtime": json.dumps(a.runtime) if a.runtime is not None else None,
        "readiness": a.readiness,
        "readiness_reason": a.readiness_reason,
    }


class CapacityRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def snapshot(self, sku: str) -> list[NodeCapacity]:
        """Every ready node's GPUs of `sku` with their live instances."""
        rows = await self.uow.fetch_all(
            "SELECT n.id AS node_id, g.id AS gpu_id, g.index, i.start, i.memory, i.compute,"
            " i.profile_id, i.media_extension FROM nodes n JOIN gpus g ON g.node_id = n.id"
            " LEFT JOIN allocation_instances i ON i.gpu_id = g.id AND i.released_at IS NULL"
            " WHERE n.state = 'ready' AND g.sku = :sku ORDER BY n.id, g.index",
            {"sku": sku},
        )
        return _capacity(rows)

    async def counts_by_sku(self) -> dict[str, dict[str, Any]]:
        rows = await self.uow.fetch_all(
            "SELECT g.sku, n.state, g.id AS gpu_id, g.index, n.id AS node_id, i.start, i.memory,"
            " i.compute, i.profile_id, i.media_extension FROM gpus g JOIN nodes n"
            " ON n.id = g.node_id LEFT JOIN allocation_instances i ON i.gpu_id = g.id"
            " AND i.released_at IS NULL WHERE n.state = 'ready'"
        )
        by_sku: dict[str, list[Any]] = defaultdict(list)
        for r in rows:
            by_sku[r["sku"]].append(r)
        return {sku: {"nodes": _capacity(rs)} for sku, rs in by_sku.items()}


class GenerationRepository:
    """The per-SKU capacity generation (migration 0002): bumped by every transaction that
    changes placeable capacity, stamped on the GPUs it touched, read by the scheduler's
    in-memory index to find what other transactions (and replicas) changed."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def current(self, sku: str) -> int:
        row = await self.uow.fetch_one(
            "SELECT generation FROM capacity_generations WHERE sku = :s", {"s": sku}
        )
        return int(row["generation"]) if row else 0

    async def bump(self, gpu_ids: list[uuid.UUID]) -> dict[str, int]:
        """Bump the counters of these GPUs' SKUs and stamp the GPUs; {sku: new generation}.
        The counter row stays locked until commit, which is what orders the generations
        in commit order. Call it late in the transaction: the lock serializes the rest."""
        if not gpu_ids:
            return {}
        rows = await self.uow.fetch_all(
            "WITH bumped AS (UPDATE capacity_generations SET generation = generation + 1"
            " WHERE sku IN (SELECT DISTINCT sku FROM gpus WHERE id = ANY(:g))"
            " RETURNING sku, generation), stamped AS (UPDATE gpus SET generation ="
            " bumped.generation FROM bumped WHERE gpus.id = ANY(:g) AND gpus.sku = bumped.sku)"
            " SELECT sku, generation FROM bumped",
            {"g": list(gpu_ids)},
        )
        return {r["sku"]: int(r["generation"]) for r in rows}

    async def bump_node(self, node_id: uuid.UUID) -> dict[str, int]:
        rows = await self.uow.fetch_all("SELECT id FROM gpus WHERE node_id = :n", {"n": node_id})
        return await self.bump([r["id"] for r in rows])

    async def bump_allocation(self, allocation_id: uuid.UUID) -> dict[str, int]:
        rows = await self.uow.fetch_all(
            "SELECT DISTINCT gpu_id FROM allocation_instances WHERE allocation_id = :a",
            {"a": allocation_id},
        )
        return await self.bump([r["gpu_id"] for r in rows])

    async def index_rows(
        self,
        sku: str,
        *,
        changed_since: int | None = None,
        nodes: list[uuid.UUID] | None = None,
    ) -> list[tuple[uuid.UUID, uuid.UUID, int, bool, list[int]]]:
        """(node id, gpu id, index, node ready, layout code) for the index: every GPU of
        `sku` on ready nodes, or (with `changed_since`) every GPU of the nodes with a GPU
        stamped after that generation, or listed in `nodes`, ready or not. The layout code
        is the live instances' `profile * 8 + start` (-8 for a whole GPU).

        Two plain queries (GPUs; live instances) joined here: grouping 8,000 GPUs with
        their instances in SQL costs the database a sort and an aggregate per GPU."""
        where = "n.state = 'ready'"
        params: dict[str, Any] = {"sku": sku}
        if changed_since is not None:
            where = (
                "g.node_id IN (SELECT node_id FROM gpus WHERE sku = :sku AND generation > :since"
                " UNION SELECT unnest(CAST(:nodes AS uuid[])))"
            )
            params |= {"since": changed_since, "nodes": list(nodes or [])}
        gpus = (
            await self.uow.execute(
                "SELECT g.node_id, g.id, g.index, n.state = 'ready' FROM gpus g"  # noqa: S608
                f" JOIN nodes n ON n.id = g.node_id WHERE g.sku = :sku AND {where}",
                params,
            )
        ).all()
        instances = (
            await self.uow.execute(
                "SELECT i.gpu_id, coalesce(i.profile_id, -1) * 8 + i.start"  # noqa: S608
                " FROM allocation_instances i JOIN gpus g ON g.id = i.gpu_id"
                f" JOIN nodes n ON n.id = g.node_id WHERE i.released_at IS NULL"
                f" AND g.sku = :sku AND {where}",
                params,
            )
        ).all()
        codes: dict[uuid.UUID, list[int]] = defaultdict(list)
        for gpu_id, code in instances:
            codes[gpu_id].append(code)
        return [(node, gpu, index, ready, codes.get(gpu, [])) for node, gpu, index, ready in gpus]


def _capacity(rows: list[Any]) -> list[NodeCapacity]:
    gpus: dict[uuid.UUID, tuple[uuid.UUID, int, list[Instance]]] = {}
    for r in rows:
        entry = gpus.setdefault(r["gpu_id"], (r["node_id"], r["index"], []))
        if r["start"] is not None:
            entry[2].append(
                Instance(
                    r["start"], r["memory"], r["compute"], r["profile_id"], r["media_extension"]
                )
            )
    nodes: dict[uuid.UUID, list[GpuState]] = defaultdict(list)
    for gpu_id, (node_id, index, instances) in gpus.items():
        nodes[node_id].append(GpuState(gpu_id, index, Layout.of(instances)))
    return [NodeCapacity(n, tuple(g)) for n, g in nodes.items()]


class QuotaRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def lock(self, tenant_id: uuid.UUID, project_id: uuid.UUID, default: int) -> int:
        """The project's limit, with its row locked: allocations of one project are checked
        against the quota one at a time, so two concurrent requests cannot both fit."""
        await self.uow.execute(
            "INSERT INTO quotas (project_id, tenant_id, max_compute_slices)"
            " VALUES (:p, :t, :d) ON CONFLICT DO NOTHING",
            {"p": project_id, "t": tenant_id, "d": default},
        )
        row = await self.uow.fetch_one(
            "SELECT max_compute_slices FROM quotas"
            " WHERE tenant_id = :t AND project_id = :p FOR UPDATE",
            {"t": tenant_id, "p": project_id},
        )
        return int(row["max_compute_slices"])

    async def set(self, tenant_id: uuid.UUID, project_id: uuid.UUID, limit: int) -> None:
        await self.uow.execute(
            "INSERT INTO quotas (project_id, tenant_id, max_compute_slices) VALUES (:p, :t, :l)"
            " ON CONFLICT (tenant_id, project_id) DO UPDATE"
            " SET max_compute_slices = EXCLUDED.max_compute_slices",
            {"p": project_id, "t": tenant_id, "l": limit},
        )

    async def get(self, tenant_id: uuid.UUID, project_id: uuid.UUID) -> Any:
        return await self.uow.fetch_one(
            "SELECT project_id, tenant_id, max_compute_slices FROM quotas"
            " WHERE tenant_id = :t AND project_id = :p",
            {"t": tenant_id, "p": project_id},
        )


_BURNING = (
    "SELECT tenant_id, available_micros, currency, as_of FROM balance_standing"
    " WHERE tenant_id IN (SELECT tenant_id FROM allocations WHERE state = 'running'"
    " AND (CAST(:t AS uuid[]) IS NULL OR tenant_id = ANY(CAST(:t AS uuid[]))))"
    " ORDER BY tenant_id"
)
_BURNING_LOCKED = _BURNING + " FOR UPDATE"


class BalanceRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def standing(self, tenant_id: uuid.UUID) -> str | None:
        row = await self.uow.fetch_one(
            "SELECT standing FROM balance_standing WHERE tenant_id = :t", {"t": tenant_id}
        )
        return row["standing"] if row else None

    async def get(self, tenant_id: uuid.UUID) -> Any:
        return await self.uow.fetch_one(
            "SELECT standing, available_micros, currency FROM balance_standing"
            " WHERE tenant_id = :t",
            {"t": tenant_id},
        )

    async def burning(self, tenant_ids: list[uuid.UUID] | None = None, *, lock: bool = False):
        """For each tenant with a running allocation (or those of `tenant_ids`) and a balance
        standing: its balance row and what its allocations burned since the balance's
        `as_of` (sku, mig_profile, count, running_since, until: the end of its final usage
        interval, None while it runs). `lock`: the balance rows FOR UPDATE (a balance event
        waits until the hard stop has decided)."""
        balances = await self.uow.fetch_all(
            _BURNING_LOCKED if lock else _BURNING, {"t": tenant_ids}
        )
        if not balances:
            return []
        rows = await self.uow.fetch_all(
            "SELECT a.tenant_id, a.sku, a.mig_profile, a.count, a.running_since,"
            " CASE WHEN a.state = 'running' THEN NULL ELSE a.usage_cursor END AS until"
            " FROM allocations a JOIN balance_standing b ON b.tenant_id = a.tenant_id"
            " WHERE a.tenant_id = ANY(:t) AND a.running_since IS NOT NULL"
            " AND (a.state = 'running' OR a.usage_cursor > b.as_of)",
            {"t": [b["tenant_id"] for b in balances]},
        )
        usage: dict[uuid.UUID, list[Any]] = {}
        for r in rows:
            usage.setdefault(r["tenant_id"], []).append(r)
        return [(b, usage.get(b["tenant_id"], [])) for b in balances]

    async def apply(self, row: dict[str, Any]) -> bool:
        """Upsert unless we already hold a newer ledger sequence; True when applied."""
        result = await self.uow.execute(
            "INSERT INTO balance_standing (tenant_id, standing, available_micros, currency,"
            " ledger_sequence, as_of) VALUES (:tenant_id, :standing, :available_micros,"
            " :currency, :ledger_sequence, :as_of) ON CONFLICT (tenant_id) DO UPDATE SET"
            " standing = EXCLUDED.standing, available_micros = EXCLUDED.available_micros,"
            " currency = EXCLUDED.currency, ledger_sequence = EXCLUDED.ledger_sequence,"
            " as_of = EXCLUDED.as_of"
            " WHERE balance_standing.ledger_sequence <= EXCLUDED.ledger_sequence",
            row,
        )
        return result.rowcount > 0


# The public list price's scope in price_versions (a key column cannot be null).
PUBLIC_SCOPE = uuid.UUID(int=0)


class PriceRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def apply(self, row: dict[str, Any]) -> bool:
        """Keep the version unless we hold a newer (or the same) one for that effective
        instant; True when applied."""
        result = await self.uow.execute(
            "INSERT INTO price_versions (price_key, scope, currency, effective_from, price_id,"
            " micros_per_hour, min_increment_s, version) VALUES (:price_key, :scope, :currency,"
            " :effective_from, :price_id, :micros_per_hour, :min_increment_s, :version)"
            " ON CONFLICT (price_key, scope, currency, effective_from) DO UPDATE SET"
            " price_id = EXCLUDED.price_id, micros_per_hour = EXCLUDED.micros_per_hour,"
            " min_increment_s = EXCLUDED.min_increment_s, version = EXCLUDED.version"
            " WHERE price_versions.version < EXCLUDED.version",
            {**row, "scope": row["tenant_id"] or PUBLIC_SCOPE},
        )
        return result.rowcount > 0

    async def candidates(
        self, tenant_id: uuid.UUID, currency: str, keys: list[str], at: dt.datetime
    ) -> list[PriceVersion]:
        """For each key, the latest version in effect at `at` of the public price and of the
        tenant's override; `price_in_effect` chooses between them."""
        return await self.in_effect([tenant_id], [currency], keys, at)

    async def in_effect(
        self, tenant_ids: list[uuid.UUID], currencies: list[str], keys: list[str], at: dt.datetime
    ) -> list[PriceVersion]:
        """`candidates` for several tenants at once: per key, scope and currency, the latest
        version in effect at `at` of the public prices and of these tenants' overrides."""
        rows = await self.uow.fetch_all(
            "SELECT DISTINCT ON (price_key, scope, currency) price_key, scope, currency,"
            " effective_from, micros_per_hour, version FROM price_versions"
            " WHERE price_key = ANY(:k) AND scope = ANY(:s) AND currency = ANY(:c)"
            " AND effective_from <= :at"
            " ORDER BY price_key, scope, currency, effective_from DESC, version DESC",
            {"k": keys, "s": [*tenant_ids, PUBLIC_SCOPE], "c": currencies, "at": at},
        )
        return [
            PriceVersion(
                r["price_key"],
                None if r["scope"] == PUBLIC_SCOPE else r["scope"],
                r["currency"],
                r["effective_from"],
                r["micros_per_hour"],
                r["version"],
            )
            for r in rows
        ]


# LISTEN/NOTIFY channel of node desired-state changes (payload: the node id).
NODE_CHANNEL = "gpuaas_node"


class NodeRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def notify_changed(self, node_id: uuid.UUID) -> None:
        """Wake the node's held sync once this transaction commits (PostgreSQL delivers a
        NOTIFY only on commit, and folds repeats within one transaction)."""
        await self.uow.execute("SELECT pg_notify(:c, :n)", {"c": NODE_CHANNEL, "n": str(node_id)})

    async def desired_ids(self, node_id: uuid.UUID, states: Iterable[AllocationState]) -> set[str]:
        rows = await self.uow.fetch_all(
            "SELECT id FROM allocations WHERE node_id = :n AND state = ANY(:s)",
            {"n": node_id, "s": [s.value for s in states]},
        )
        return {str(r["id"]) for r in rows}

    async def free_ready_gpus(self) -> int:
        """Whole GPUs of ready nodes with no live instance."""
        row = await self.uow.fetch_one(
            "SELECT count(*) AS n FROM gpus g JOIN nodes n ON n.id = g.node_id"
            " WHERE n.state = 'ready' AND NOT EXISTS (SELECT 1 FROM allocation_instances i"
            " WHERE i.gpu_id = g.id AND i.released_at IS NULL)"
        )
        return int(row["n"])

    async def idle_of_provider(self, provider: str, cutoff: dt.datetime) -> list[Any]:
        """Ready nodes of `provider` without a live allocation and unchanged since
        `cutoff` (id, name, GPU count)."""
        return await self.uow.fetch_all(
            "SELECT n.id, n.name, (SELECT count(*) FROM gpus g WHERE g.node_id = n.id) AS gpus"
            " FROM nodes n WHERE n.provider = :provider AND n.state = 'ready'"
            " AND NOT EXISTS (SELECT 1 FROM allocations a WHERE a.node_id = n.id"
            " AND a.state NOT IN ('rejected', 'released'))"
            " AND greatest(n.registered_at, coalesce((SELECT max(a.updated_at) FROM"
            " allocations a WHERE a.node_id = n.id), n.registered_at)) < :cutoff",
            {"provider": provider, "cutoff": cutoff},
        )

    _COLUMNS = (
        "id, name, provider, state, credential_hash, agent_url, registered_at,"
        " last_heartbeat_at, observed"
    )

    async def by_name(self, name: str, *, lock: bool = False) -> Any:
        return await self.uow.fetch_one(
            f"SELECT {self._COLUMNS} FROM nodes WHERE name = :n" + (" FOR UPDATE" if lock else ""),  # noqa: S608
            {"n": name},
        )

    async def get(self, node_id: uuid.UUID, *, lock: bool = False) -> Any:
        return await self.uow.fetch_one(
            f"SELECT {self._COLUMNS} FROM nodes WHERE id = :id" + (" FOR UPDATE" if lock else ""),  # noqa: S608
            {"id": node_id},
        )

    async def all(self) -> list[Any]:
        return await self.uow.fetch_all(
            f"SELECT {self._COLUMNS}, (SELECT count(*) FROM gpus g WHERE g.node_id = nodes.id)"  # noqa: S608
            " AS gpu_count, (SELECT min(sku) FROM gpus g WHERE g.node_id = nodes.id) AS sku"
            " FROM nodes ORDER BY name"
        )

    async def add(self, node: dict[str, Any]) -> None:
        await self.uow.execute(
            "INSERT INTO nodes (id, name, provider, state, credential_hash, agent_url,"
            " registered_at, last_heartbeat_at) VALUES (:id, :name, :provider, :state,"
            " :credential_hash, :agent_url, :now, :now)",
            node,
        )

    async def update(self, node_id: uuid.UUID, **fields: Any) -> None:
        sets = ", ".join(f"{k} = :{k}" for k in fields)
        if "observed" in fields:
            fields["observed"] = json.dumps(fields["observed"])
            sets = sets.replace("observed = :observed", "observed = CAST(:observed AS jsonb)")
        await self.uow.execute(f"UPDATE nodes SET {sets} WHERE id = :id", {**fields, "id": node_id})  # noqa: S608

    async def gpus(self, node_id: uuid.UUID) -> list[Any]:
        return await self.uow.fetch_all(
            "SELECT id, index, sku, device_uuid FROM gpus WHERE node_id = :n ORDER BY index",
            {"n": node_id},
        )

    async def add_gpu(self, node_id: uuid.UUID, index: int, sku: str, device_uuid: str) -> None:
        await self.uow.execute(
            "INSERT INTO gpus (id, node_id, index, sku, device_uuid) VALUES (:id, :n, :i, :s, :u)"
            " ON CONFLICT (node_id, index) DO UPDATE SET device_uuid = EXCLUDED.device_uuid",
            {"id": uuid7(), "n": node_id, "i": index, "s": sku, "u": device_uuid},
        )

    async def stale(self, before: dt.datetime) -> list[Any]:
        return await self.uow.fetch_all(
            f"SELECT {self._COLUMNS} FROM nodes WHERE last_heartbeat_at < :b"  # noqa: S608
            " AND state NOT IN (:offline, :retired) FOR UPDATE SKIP LOCKED",
            {"b": before, "offline": NodeState.OFFLINE.value, "retired": NodeState.RETIRED.value},
        )


class ProjectRepository:
    """gpuaas's projection of iam's projects and tenants' status (iam.project.v1,
    iam.tenant.v1)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def remember(
        self, project_id: uuid.UUID, tenant_id: uuid.UUID, created_at: dt.datetime
    ) -> None:
        await self.uow.execute(
            "INSERT INTO projects (project_id, tenant_id, created_at) VALUES (:p, :t, :c)"
            " ON CONFLICT (project_id) DO NOTHING",
            {"p": project_id, "t": tenant_id, "c": created_at},
        )

    async def tenant_created(self, tenant_id: uuid.UUID, status: str, at: dt.datetime) -> None:
        """A created event never undoes a suspension already projected."""
        await self.uow.execute(
            "INSERT INTO tenants (tenant_id, status, changed_at) VALUES (:t, :s, :at)"
            " ON CONFLICT (tenant_id) DO NOTHING",
            {"t": tenant_id, "s": status, "at": at},
        )

    async def tenant_suspended(self, tenant_id: uuid.UUID, at: dt.datetime) -> None:
        await self.uow.execute(
            "INSERT INTO tenants (tenant_id, status, changed_at) VALUES (:t, 'suspended', :at)"
            " ON CONFLICT (tenant_id) DO UPDATE SET status = 'suspended',"
            " changed_at = EXCLUDED.changed_at",
            {"t": tenant_id, "at": at},
        )

    async def scope(self, tenant_id: uuid.UUID, project_id: uuid.UUID) -> Any:
        """The project (with its tenant's status, null when unknown) if it is the tenant's."""
        return await self.uow.fetch_one(
            "SELECT p.project_id, p.tenant_id, t.status AS tenant_status FROM projects p"
            " LEFT JOIN tenants t ON t.tenant_id = p.tenant_id"
            " WHERE p.project_id = :p AND p.tenant_id = :t",
            {"p": project_id, "t": tenant_id},
        )


class LaunchGateRepository:
    """The launch gate's projection of registry's releases and publisher keys, and each
    project's required channel."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def apply_release(self, row: dict[str, Any]) -> None:
        """Keep the event with the highest sequence (a redelivery or an older event changes
        nothing of it); every event still adds the threshold of the channel it promoted to,
        and a yank is never undone."""
        await self.uow.execute(
            "INSERT INTO releases (version_id, tenant_id, project_id, app, version,"
            " manifest_digest, channels, yanked, envelopes, thresholds, sequence, occurred_at)"
            " VALUES (:version_id, :tenant_id, :project_id, :app, :version, :manifest_digest,"
            " :channels, :yanked, :envelopes, CAST(:thresholds AS jsonb), :sequence, :occurred_at)"
            " ON CONFLICT (version_id) DO UPDATE SET"
            " channels = CASE WHEN EXCLUDED.sequence > releases.sequence"
            "   THEN EXCLUDED.channels ELSE releases.channels END,"
            " envelopes = CASE WHEN EXCLUDED.sequence > releases.sequence"
            "   THEN EXCLUDED.envelopes ELSE releases.envelopes END,"
            " yanked = releases.yanked OR EXCLUDED.yanked,"
            " thresholds = releases.thresholds || EXCLUDED.thresholds,"
            " occurred_at = GREATEST(releases.occurred_at, EXCLUDED.occurred_at),"
            " sequence = GREATEST(releases.sequence, EXCLUDED.sequence)",
            {**row, "thresholds": json.dumps(row["thresholds"])},
        )

    async def apply_key(self, row: dict[str, Any]) -> None:
        """The furthest status (active < rotated < revoked) and the latest expiry win."""
        await self.uow.execute(
            "INSERT INTO publisher_keys (tenant_id, key_id, public_key, status, expires_at,"
            " expiry_as_of) VALUES (:tenant_id, :key_id, :public_key, :status, :expires_at,"
            " :as_of) ON CONFLICT (tenant_id, key_id) DO UPDATE SET"
            " status = CASE WHEN array_position(ARRAY['active', 'rotated', 'revoked'],"
            "   EXCLUDED.status) > array_position(ARRAY['active', 'rotated', 'revoked'],"
            "   publisher_keys.status) THEN EXCLUDED.status ELSE publisher_keys.status END,"
            " expires_at = CASE WHEN EXCLUDED.expiry_as_of >= publisher_keys.expiry_as_of"
            "   THEN EXCLUDED.expires_at ELSE publisher_keys.expires_at END,"
            " expiry_as_of = GREATEST(publisher_keys.expiry_as_of, EXCLUDED.expiry_as_of)",
            row,
        )

    async def release(self, tenant_id: uuid.UUID, app: str, version: str) -> Any:
        return await self.uow.fetch_one(
            "SELECT tenant_id, project_id, app, version, manifest_digest, envelopes, channels,"
            " yanked, thresholds, sequence FROM releases"
            " WHERE tenant_id = :t AND app = :a AND version = :v",
            {"t": tenant_id, "a": app, "v": version},
        )

    async def gate_facts(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        namespace: uuid.UUID,
        app: str,
        version: str,
    ) -> tuple[str | None, Any, list[dict[str, Any]]]:
        """What the launch gate decides from, in one round trip: the project's required
        channel (None: not set), the release row (None: unknown), and the namespace's
        publisher keys (only when the release is known)."""
        row = await self.uow.fetch_one(
            "SELECT (SELECT required_channel FROM launch_policies"
            "        WHERE project_id = :p AND tenant_id = :t) AS required_channel,"
            " r.tenant_id, r.project_id, r.app, r.version, r.manifest_digest, r.envelopes,"
            " r.channels, r.yanked, r.thresholds, r.sequence,"
            " CASE WHEN r.version_id IS NULL THEN '[]'::json ELSE (SELECT coalesce(json_agg("
            "   json_build_object('public_key', encode(k.public_key, 'hex'), 'status', k.status,"
            "   'expires_at', k.expires_at) ORDER BY k.key_id), '[]'::json)"
            "   FROM publisher_keys k WHERE k.tenant_id = :ns) END AS keys"
            " FROM (SELECT 1) AS one LEFT JOIN releases r"
            " ON r.tenant_id = :ns AND r.app = :a AND r.version = :v",
            {"t": tenant_id, "p": project_id, "ns": namespace, "a": app, "v": version},
        )
        assert row is not None  # the LEFT JOIN of one row always answers one
        keys = [
            {
                "public_key": bytes.fromhex(k["public_key"]),
                "status": k["status"],
                "expires_at": dt.datetime.fromisoformat(k["expires_at"]) if k["expires_at"]
                else None,
            }
            for k in (row["keys"] if isinstance(row["keys"], list) else [])
        ]  # fmt: skip
        release = row if row["tenant_id"] is not None else None
        return row["required_channel"], release, keys

    async def keys(self, tenant_id: uuid.UUID) -> list[Any]:
        return await self.uow.fetch_all(
            "SELECT key_id, public_key, status, expires_at FROM publisher_keys"
            " WHERE tenant_id = :t ORDER BY key_id",
            {"t": tenant_id},
        )

    async def required_channel(self, tenant_id: uuid.UUID, project_id: uuid.UUID) -> str | None:
        row = await self.uow.fetch_one(
            "SELECT required_channel FROM launch_policies WHERE project_id = :p AND tenant_id = :t",
            {"p": project_id, "t": tenant_id},
        )
        return row["required_channel"] if row else None

    async def set_required_channel(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        channel: str,
        actor: str,
        at: dt.datetime,
    ) -> None:
        await self.uow.execute(
            "INSERT INTO launch_policies (project_id, tenant_id, required_channel, updated_by,"
            " updated_at) VALUES (:p, :t, :c, :by, :at) ON CONFLICT (project_id) DO UPDATE SET"
            " required_channel = EXCLUDED.required_channel, updated_by = EXCLUDED.updated_by,"
            " updated_at = EXCLUDED.updated_at"
            " WHERE launch_policies.tenant_id = EXCLUDED.tenant_id",
            {"p": project_id, "t": tenant_id, "c": channel, "by": actor, "at": at},
        )
