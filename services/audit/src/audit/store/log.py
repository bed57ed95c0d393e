"""SQL of the Merkle audit log: leaves, tile versions, tree heads, checkpoints, the signing
key, retention. Runs in the caller's unit of work; never commits. The append path writes
each batch's rows with one `unnest` insert per table (no per-row round trips)."""

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import DateTime, LargeBinary, SmallInteger, Text, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT, UUID

from platformkit.db import UnitOfWork

# Every append and every checkpoint runs under this transaction-scoped lock: one writer of
# the tree at a time, whatever the number of consumer instances.
_LOG_LOCK = 7_400_002

_INSERT_LEAVES = text(
    "INSERT INTO audit_leaves (idx, event_id, tenant, tenant_seq, actor, action, target_kind,"
    " target_id, occurred_at, leaf) SELECT * FROM unnest(:idx, :event_id, :tenant, :tenant_seq,"
    " :actor, :action, :target_kind, :target_id, :occurred_at, :leaf)"
).bindparams(
    bindparam("idx", type_=ARRAY(BIGINT)),
    bindparam("event_id", type_=ARRAY(UUID(as_uuid=True))),
    bindparam("tenant_seq", type_=ARRAY(BIGINT)),
    *(
        bindparam(n, type_=ARRAY(Text))
        for n in ("tenant", "actor", "action", "target_kind", "target_id")
    ),
    bindparam("occurred_at", type_=ARRAY(DateTime(timezone=True))),
    bindparam("leaf", type_=ARRAY(LargeBinary)),
)
_INSERT_TILES = text(
    "INSERT INTO audit_tiles (level, idx, width, hashes)"
    " SELECT * FROM unnest(:level, :idx, :width, :hashes) ON CONFLICT DO NOTHING"
).bindparams(
    bindparam("level", type_=ARRAY(SmallInteger)),
    bindparam("idx", type_=ARRAY(BIGINT)),
    bindparam("width", type_=ARRAY(SmallInteger)),
    bindparam("hashes", type_=ARRAY(LargeBinary)),
)
_READ_TILES = text(
    "SELECT DISTINCT ON (t.level, t.idx) t.level, t.idx, t.hashes FROM audit_tiles t"
    " JOIN unnest(:level, :idx) AS k(level, idx) ON t.level = k.level AND t.idx = k.idx"
    " ORDER BY t.level, t.idx, t.width DESC"
).bindparams(bindparam("level", type_=ARRAY(SmallInteger)), bindparam("idx", type_=ARRAY(BIGINT)))
_SEEN = text("SELECT event_id FROM audit_leaves WHERE event_id = ANY(:ids)").bindparams(
    bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))
)
_TENANT_SEQS = text(
    "SELECT t.tenant, (SELECT l.tenant_seq FROM audit_leaves l WHERE l.tenant = t.tenant"
    " ORDER BY l.idx DESC LIMIT 1) AS seq FROM unnest(:tenants) AS t(tenant)"
).bindparams(bindparam("tenants", type_=ARRAY(Text)))

_RECORD_COLUMNS = "idx, tenant, tenant_seq, leaf"


class LogRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def lock(self) -> None:
        await self.uow.execute("SELECT pg_advisory_xact_lock(:k)", {"k": _LOG_LOCK})

    async def tree_head(self) -> Any:
        """The latest (size, root), or None for the empty tree."""
        return await self.uow.fetch_one(
            "SELECT size, root FROM audit_tree_heads ORDER BY size DESC LIMIT 1"
        )

    async def read_tiles(self, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """The widest stored version of each tile named."""
        keys = list(keys)
        if not keys:
            return {}
        result = await self.uow.session.execute(
            _READ_TILES, {"level": [k[0] for k in keys], "idx": [k[1] for k in keys]}
        )
        return {(r.level, r.idx): bytes(r.hashes) for r in result}

    async def seen(self, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        result = await self.uow.session.execute(_SEEN, {"ids": list(event_ids)})
        return {r[0] for r in result}

    async def tenant_seqs(self, tenants: Sequence[str]) -> dict[str, int]:
        """The last tenant_seq of each tenant (0 for one without records)."""
        result = await self.uow.session.execute(_TENANT_SEQS, {"tenants": list(tenants)})
        return {r.tenant: r.seq or 0 for r in result}

    async def append(
        self,
        leaves: Mapping[str, list[Any]],
        tiles: Sequence[tuple[int, int, int, bytes]],
        size: int,
        root: bytes,
        at: dt.datetime,
    ) -> None:
        await self.uow.session.execute(_INSERT_LEAVES, dict(leaves))
        if tiles:
            await self.uow.session.execute(
                _INSERT_TILES,
                {
                    "level": [t[0] for t in tiles],
                    "idx": [t[1] for t in tiles],
                    "width": [t[2] for t in tiles],
                    "hashes": [t[3] for t in tiles],
                },
            )
        await self.uow.execute(
            "INSERT INTO audit_tree_heads (size, root, appended_at) VALUES (:s, :r, :at)",
            {"s": size, "r": root, "at": at},
        )

    async def latest_checkpoint(self) -> Any:
        return await self.uow.fetch_one(
            "SELECT size, root, signed_at, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1"
        )

    async def checkpoint_at_least(self, size: int) -> Any:
        """The oldest checkpoint covering `size` leaves."""
        return await self.uow.fetch_one(
            "SELECT size, root, signed_at, note FROM audit_checkpoints WHERE size >= :s"
            " ORDER BY size LIMIT 1",
            {"s": size},
        )

    async def checkpoint(self, size: int) -> Any:
        return await self.uow.fetch_one(
            "SELECT size, root, signed_at, note FROM audit_checkpoints WHERE size = :s",
            {"s": size},
        )

    async def add_checkpoint(self, size: int, root: bytes, at: dt.datetime, note: str) -> None:
        await self.uow.execute(
            "INSERT INTO audit_checkpoints (size, root, signed_at, note) VALUES (:s, :r, :at, :n)",
            {"s": size, "r": root, "at": at, "n": note},
        )

    async def signing_key(self, name: str) -> Any:
        return await self.uow.fetch_one(
            "SELECT key_name, vkey, pkcs8, encrypted FROM audit_signing_keys WHERE key_name = :n",
            {"n": name},
        )

    async def add_signing_key(
        self, name: str, vkey: str, pkcs8: bytes, encrypted: bool, at: dt.datetime
    ) -> None:
        await self.uow.execute(
            "INSERT INTO audit_signing_keys (key_name, vkey, pkcs8, encrypted, created_at)"
            " VALUES (:n, :v, :p, :e, :at) ON CONFLICT (key_name) DO NOTHING",
            {"n": name, "v": vkey, "p": pkcs8, "e": encrypted, "at": at},
        )

    async def records(
        self,
        *,
        tenant: str | None,
        fleet: bool,
        after: int,
        limit: int,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        below: int | None = None,
    ) -> list[Any]:
        """A page of records from index `after` on, of one tenant (or the fleet's, for an
        operator: `fleet=True` and `tenant` None reads every record)."""
        clauses = ["idx >= :after"]
        if not fleet or tenant is not None:
            clauses.append("tenant = :tenant")
        for column, name, value in (
            ("actor", "actor", actor),
            ("action", "action", action),
            ("target_id", "target", target),
        ):
            if value is not None:
                clauses.append(f"{column} = :{name}")
        if since is not None:
            clauses.append("occurred_at >= :since")
        if until is not None:
            clauses.append("occurred_at < :until")
        if below is not None:
            clauses.append("idx < :below")
        return await self.uow.fetch_all(
            f"SELECT {_RECORD_COLUMNS} FROM audit_leaves WHERE {' AND '.join(clauses)}"  # noqa: S608
            " ORDER BY idx LIMIT :limit",
            {
                "after": after,
                "tenant": tenant,
                "actor": actor,
                "action": action,
                "target": target,
                "since": since,
                "until": until,
                "below": below,
                "limit": limit,
            },
        )

    async def record(self, idx: int) -> Any:
        return await self.uow.fetch_one(
            f"SELECT {_RECORD_COLUMNS} FROM audit_leaves WHERE idx = :i",  # noqa: S608
            {"i": idx},
        )

    async def legacy_records(self) -> list[Any]:
        """The hash-chained records of the log before the Merkle tree (migration 0001)."""
        return await self.uow.fetch_all(
            "SELECT seq, event_id, event_type, source, subject, tenant, trace_id, occurred_at,"
            " payload, hash FROM audit_records ORDER BY seq"
        )

    async def set_retention(self, tenant: str, days: int, at: dt.datetime) -> None:
        await self.uow.execute(
            "INSERT INTO audit_retention (tenant, days, changed_at) VALUES (:t, :d, :at)"
            " ON CONFLICT (tenant) DO UPDATE SET days = EXCLUDED.days,"
            " changed_at = EXCLUDED.changed_at",
            {"t": tenant, "d": days, "at": at},
        )

    async def retention(self, tenant: str) -> int | None:
        row = await self.uow.fetch_one(
            "SELECT days FROM audit_retention WHERE tenant = :t", {"t": tenant}
        )
        return row["days"] if row else None

    async def first_retained_index(self, now: dt.datetime) -> int | None:
        """The lowest index whose record is still within its tenant's retention at `now`."""
        row = await self.uow.fetch_one(
            "SELECT min(l.idx) AS idx FROM audit_leaves l LEFT JOIN audit_retention r"
            " ON r.tenant = l.tenant"
            " WHERE l.occurred_at > CAST(:now AS timestamptz)"
            " - make_interval(days => coalesce(r.days, 400))",
            {"now": now},
        )
        return row["idx"] if row else None

    async def pruned_below(self) -> int:
        row = await self.uow.fetch_one("SELECT coalesce(max(min_index), 0) AS m FROM audit_prunes")
        return int(row["m"])

    async def prune(self, min_index: int, now: dt.datetime) -> int:
        row = await self.uow.fetch_one(
            "SELECT audit_prune(:m, :now) AS removed", {"m": min_index, "now": now}
        )
        return int(row["removed"])
