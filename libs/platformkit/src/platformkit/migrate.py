"""Forward-only SQL migrations, applied at start-up and by `python -m <service> migrate`.

Each service keeps numbered files (`0001_tenants.sql`, ...) in its own
`store/migrations` package; the kit's own tables (outbox, inbox, idempotency keys) come
first under the `kit` namespace. Each file runs in its own transaction, recorded in
`schema_migrations`; an advisory lock makes concurrent starts (several replicas, the
Helm pre-upgrade Job) apply each file once.

Migrations run as the database's owner role. The runtime role (the login the service serves
with) gets its privileges from the migrations themselves: `runtime_role` is handed to them
as the session setting `gpucloud.runtime_role`, and the kit's `for_runtime_role(statement)`
runs a GRANT or REVOKE for it (`%I` is the role), doing nothing when there is no separate
runtime role (one login migrates and serves: tests, compose). The kit's 0002 grants DML on
every table and sequence, now and by default for later ones; a service's migration revokes
what its runtime must never do (billing: rewriting the ledger).
"""

import importlib.resources
import logging

import psycopg

from platformkit.db import libpq_url

log = logging.getLogger(__name__)
_LOCK_KEY = 7_300_001


def _files(package: str) -> list[tuple[str, str]]:
    root = importlib.resources.files(package)
    return sorted(
        (entry.name, entry.read_text()) for entry in root.iterdir() if entry.name.endswith(".sql")
    )


def apply_migrations(
    database_url: str, packages: list[tuple[str, str]], runtime_role: str | None = None
) -> list[str]:
    """Apply pending migrations as the login of `database_url` (the owner). `packages` is
    [(namespace, package with .sql files)]; `runtime_role` the role to grant to."""
    applied: list[str] = []
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("SELECT set_config('gpucloud.runtime_role', %s, false)", (runtime_role or "",))
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for namespace, package in packages:
                for name, sql in _files(package):
                    version = f"{namespace}/{name}"
                    if version in done:
                        continue
                    with conn.transaction():
                        conn.execute(sql)
                        conn.execute(
                            "INSERT INTO schema_migrations (version) VALUES (%s)", (version,)
                        )
                    applied.append(version)
                    log.info("migration applied", extra={"fields": {"version": version}})
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied
