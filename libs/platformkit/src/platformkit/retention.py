"""Bounded tables: the kit's inbox, idempotency keys and sent outbox rows are deleted past a
retention each service declares (`ServiceDefinition.retention`), by one supervised job.

    retention=Retention(inbox=dt.timedelta(days=8), idempotency=dt.timedelta(hours=24))

- `inbox`: how long a consumer still recognises an event it applied. It must outlast the
  broker's retention of the topics it reads (`GPUCLOUD_KAFKA_RETENTION_HOURS`, default 168,
  Kafka's default `log.retention.hours`): a consumer group rewound to the earliest offset
  (a reset, a new replica with a lost offset) is redelivered at most that far back, and
  each redelivered event must still find its inbox row, or it would be applied twice. A
  service whose inbox retention is shorter refuses to start (`check`).
- `idempotency`: how long a client's Idempotency-Key replays its stored response (24 h,
  as Stripe does); a retry after that runs as a new request.
- `outbox_sent`: how long a published outbox row is kept (for audits of delivery: the
  chaos auditor reads them); unsent rows are never deleted.

`purge(conn, retention, now)` deletes what is older than `now - retention` in slices of
`slice_rows`, so a large backlog never holds long locks; the job runs it every
`interval_s` with the database's clock. Tests pass their own `now` (a clock).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
from typing import Any

import psycopg

log = logging.getLogger(__name__)

DEFAULT_KAFKA_RETENTION = dt.timedelta(hours=168)

# table -> (the timestamp its age is measured by, a further condition)
_TABLES = {
    "inbox": ("received_at", ""),
    "idempotency_keys": ("created_at", ""),
    "outbox": ("sent_at", " AND sent_at IS NOT NULL"),  # an unsent row is never old
}


@dataclasses.dataclass(frozen=True)
class Retention:
    inbox: dt.timedelta = dt.timedelta(days=8)
    idempotency: dt.timedelta = dt.timedelta(hours=24)
    outbox_sent: dt.timedelta = dt.timedelta(hours=24)
    interval_s: float = 300.0
    slice_rows: int = 5000

    def horizons(self) -> dict[str, dt.timedelta]:
        return {
            "inbox": self.inbox,
            "idempotency_keys": self.idempotency,
            "outbox": self.outbox_sent,
        }

    def check(self, kafka_retention: dt.timedelta) -> None:
        """Refuse an inbox that forgets events the broker can still redeliver."""
        if self.inbox < kafka_retention:
            raise ValueError(
                f"inbox retention {self.inbox} is shorter than the Kafka retention "
                f"{kafka_retention} (GPUCLOUD_KAFKA_RETENTION_HOURS): a redelivered event "
                "would be applied twice"
            )
        for name, horizon in self.horizons().items():
            if horizon <= dt.timedelta(0):
                raise ValueError(f"{name} retention must be positive, not {horizon}")


def kafka_retention_from_env() -> dt.timedelta:
    raw = os.environ.get("GPUCLOUD_KAFKA_RETENTION_HOURS")
    return dt.timedelta(hours=float(raw)) if raw else DEFAULT_KAFKA_RETENTION


async def purge(
    conn: psycopg.AsyncConnection[Any], retention: Retention, now: dt.datetime
) -> dict[str, int]:
    """Delete every row past its table's retention at `now`; returns rows deleted per table.
    `conn` is in autocommit mode: each slice is its own short transaction."""
    deleted: dict[str, int] = {}
    for table, horizon in retention.horizons().items():
        column, extra = _TABLES[table]
        statement = (
            f"DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table}"  # noqa: S608
            f" WHERE {column} < %s{extra} ORDER BY {column} LIMIT %s)"
        )
        total = 0
        while True:
            cur = await conn.execute(statement, (now - horizon, retention.slice_rows))
            total += cur.rowcount
            if cur.rowcount < retention.slice_rows:
                break
        deleted[table] = total
    return deleted


async def purge_now(database_url: str, retention: Retention) -> dict[str, int]:
    """One run of the retention job, with the database's clock."""
    from platformkit.db import libpq_url

    async with await psycopg.AsyncConnection.connect(
        libpq_url(database_url), autocommit=True
    ) as conn:
        cur = await conn.execute("SELECT clock_timestamp()")
        row = await cur.fetchone()
        assert row is not None
        deleted = await purge(conn, retention, row[0])
    if any(deleted.values()):
        log.info("retention purge", extra={"fields": deleted})
    return deleted
