"""The auditor on real PostgreSQL, with the services' own migrations: quiet on consistent
books, and each broken promise planted by hand is reported under its check (so the chaos
run's `violations: 0` means something)."""

import datetime as dt
import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from chaos import audit
from platformkit.migrate import apply_migrations
from platformkit.service import KIT_MIGRATIONS

pytestmark = pytest.mark.integration

SCHEMAS = {
    "gpuaas": [KIT_MIGRATIONS, ("gpuaas", "gpuaas.store.migrations")],
    "billing": [KIT_MIGRATIONS, ("billing", "billing.store.migrations")],
    "iam": [KIT_MIGRATIONS],
    "audit": [KIT_MIGRATIONS, ("audit", "audit.store.migrations")],
    "terminal_gateway": [KIT_MIGRATIONS, ("terminal_gateway", "terminal_gateway.store.migrations")],
}
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def databases(infra) -> Iterator[dict[str, str]]:
    """One fresh database per service the auditor reads, migrated like the service does."""
    urls = {}
    with psycopg.connect(infra.pg_admin_url, autocommit=True) as conn:
        for service in SCHEMAS:
            name = f"test_chaos_{service}_{uuid.uuid4().hex[:8]}"
            conn.execute(f'CREATE DATABASE "{name}"')
            urls[service] = infra.database_url(name)
    try:
        for service, packages in SCHEMAS.items():
            apply_migrations(urls[service], packages)
        yield urls
    finally:
        with psycopg.connect(infra.pg_admin_url, autocommit=True) as conn:
            for url in urls.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def _connect(urls: dict[str, str]) -> audit.Connect:
    return lambda service: psycopg.connect(urls[service], autocommit=True)


def _outbox(conn, topic: str, payload: dict, sent: bool = True) -> uuid.UUID:
    event_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO outbox (id, topic, key, type, source, subject, occurred_at, payload,"
        " sent_at) VALUES (%s, %s, 'k', 't', 's', 'x', %s, %s, %s)",
        (event_id, topic, NOW, json.dumps(payload).encode(), NOW if sent else None),
    )
    return event_id


def _interval(allocation_id: uuid.UUID, sequence: int, start_s: int, end_s: int) -> dict:
    return {
        "interval_id": str(uuid.uuid4()),
        "allocation_id": str(allocation_id),
        "sequence": sequence,
        "started_at": (NOW + dt.timedelta(seconds=start_s)).isoformat(),
        "ended_at": (NOW + dt.timedelta(seconds=end_s)).isoformat(),
        "duration_ms": (end_s - start_s) * 1000,
        "final": False,
    }


def _checks(urls: dict[str, str], verify: dict | None = None) -> set[str]:
    report = audit.audit(_connect(urls), tuple(SCHEMAS), {"ok": True} if verify is None else verify)
    return {v.check for v in report.violations}


def test_consistent_books_pass(databases) -> None:
    with psycopg.connect(databases["iam"], autocommit=True) as iam:
        tenant_event = _outbox(iam, "iam.tenant.v1", {})
    with psycopg.connect(databases["billing"], autocommit=True) as billing:
        billing.execute(
            "INSERT INTO inbox (consumer, event_id, event_type) VALUES ('tenants', %s, 't')",
            (tenant_event,),
        )
    with psycopg.connect(databases["audit"], autocommit=True) as audit_db:
        audit_db.execute(
            "INSERT INTO audit_leaves (idx, event_id, actor, action, target_kind, target_id,"
            " occurred_at, leaf) VALUES (0, %s, 'u', 'iam.tenant.created', 'tenant', 't',"
            " now(), '\\x00')",
            (tenant_event,),
        )
    with psycopg.connect(databases["terminal_gateway"], autocommit=True) as tg:
        tg.execute(
            "INSERT INTO inbox (consumer, event_id, event_type) VALUES ('tenants', %s, 't')",
            (tenant_event,),
        )
    with psycopg.connect(databases["gpuaas"], autocommit=True) as gpuaas:
        # a zero-length interval is free: no ledger entry expected
        _outbox(gpuaas, "metering.usage.v1", _interval(uuid.uuid4(), 0, 5, 5))
    assert _checks(databases) == set()


def test_each_broken_promise_is_reported(databases) -> None:
    allocation = uuid.uuid4()
    with psycopg.connect(databases["gpuaas"], autocommit=True) as gpuaas:
        # usage never rated, and two overlapping intervals of one allocation
        _outbox(gpuaas, "metering.usage.v1", _interval(allocation, 0, 0, 10))
        _outbox(gpuaas, "metering.usage.v1", _interval(allocation, 1, 5, 12))
        # an allocation stuck outside a final state, on a GPU two live instances share
        node, gpu = uuid.uuid4(), uuid.uuid4()
        gpuaas.execute(
            "INSERT INTO nodes (id, name, provider, state, credential_hash, registered_at,"
            " last_heartbeat_at) VALUES (%s, 'n', 'static', 'ready', 'h', %s, %s)",
            (node, NOW, NOW),
        )
        gpuaas.execute(
            "INSERT INTO gpus (id, node_id, index, sku, device_uuid)"
            " VALUES (%s, %s, 0, 'h100-80gb', 'GPU-0')",
            (gpu, node),
        )
        for allocation_id in (allocation, uuid.uuid4()):
            gpuaas.execute(
                "INSERT INTO allocations (id, tenant_id, project_id, sku, count, state, units,"
                " created_at, updated_at) VALUES (%s, %s, %s, 'h100-80gb', 1, 'releasing', 8,"
                " %s, %s)",
                (allocation_id, uuid.uuid4(), uuid.uuid4(), NOW, NOW),
            )
            gpuaas.execute(
                "INSERT INTO allocation_instances (id, allocation_id, gpu_id, start, memory,"
                " compute) VALUES (%s, %s, %s, 0, 8, 7)",
                (uuid.uuid4(), allocation_id, gpu),
            )
    with psycopg.connect(databases["billing"], autocommit=True) as billing:
        # a cached balance no transfer explains
        billing.execute(
            "INSERT INTO accounts (id, kind, currency, credits_posted) VALUES (%s, 'revenue',"
            " 'USD', 5)",
            (uuid.uuid4(),),
        )
    with psycopg.connect(databases["iam"], autocommit=True) as iam:
        # an event never sent, and a sent one no consumer took
        _outbox(iam, "iam.user.v1", {}, sent=False)
        _outbox(iam, "iam.membership.v1", {})
    assert _checks(databases, verify={"ok": False}) == {
        "usage rated once",
        "cached balance = derived",
        "allocation final",
        "slice booked once",
        "event delivered",
    }


def test_ledger_usage_without_an_interval_is_reported(databases) -> None:
    with psycopg.connect(databases["billing"], autocommit=True) as billing:
        tenant, wallet, revenue = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        billing.execute(
            "INSERT INTO tenants (id, currency, low_threshold_micros) VALUES (%s, 'USD', 0)",
            (tenant,),
        )
        billing.execute(
            "INSERT INTO accounts (id, tenant_id, kind, currency, debits_posted) VALUES"
            " (%s, %s, 'wallet', 'USD', 7)",
            (wallet, tenant),
        )
        billing.execute(
            "INSERT INTO accounts (id, kind, currency, credits_posted) VALUES"
            " (%s, 'revenue', 'USD', 7)",
            (revenue,),
        )
        billing.execute(
            "INSERT INTO transfers (id, transaction_id, debit_account_id, credit_account_id,"
            " amount_micros, currency, kind, tenant_id, occurred_at, tenant_seq) VALUES"
            " (%s, %s, %s, %s, 7, 'USD', 'usage', %s, %s, 1)",
            (uuid.uuid4(), uuid.uuid4(), wallet, revenue, tenant, NOW),
        )
    report = audit.audit(_connect(databases), tuple(SCHEMAS), {"ok": True})
    assert [v.check for v in report.violations] == ["usage rated once"]
    assert "rates no known interval" in report.violations[0].detail


def _session(conn, allocation_id: uuid.UUID, state: str, reason: str | None) -> uuid.UUID:
    session_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO sessions (id, tenant_id, project_id, allocation_id, node_id, user_id, via,"
        " kind, state, reason, tenant_roles, project_roles, token_id, token_expires_at, grace_s,"
        " minted_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, 'browser', 'shell', %s, %s,"
        " '{member}', '{}', %s, %s, 300, %s, %s)",
        (session_id, uuid.uuid4(), uuid.uuid4(), allocation_id, uuid.uuid4(), uuid.uuid4(),
         state, reason, uuid.uuid4(), NOW, NOW, NOW),
    )  # fmt: skip
    return session_id


def test_terminal_sessions_outliving_allocations_and_lost_recordings_are_reported(databases):
    import hashlib

    released = uuid.uuid4()
    with psycopg.connect(databases["gpuaas"], autocommit=True) as gpuaas:
        gpuaas.execute(
            "INSERT INTO allocations (id, tenant_id, project_id, sku, count, state, units,"
            " created_at, updated_at) VALUES (%s, %s, %s, 'h100-80gb', 1, 'released', 8, %s, %s)",
            (released, uuid.uuid4(), uuid.uuid4(), NOW, NOW),
        )
    with psycopg.connect(databases["terminal_gateway"], autocommit=True) as tg:
        _session(tg, released, "detached", "connection_lost")  # outlives its allocation
        kept = _session(tg, released, "closed", "exited")
        lost = _session(tg, released, "closed", "exited")
        for session_id, chunks in (
            (kept, [b'{"version": 2}\n', b'[0.1, "o", "x"]\n']),
            (lost, [b'{"version": 2}\n']),
        ):
            for seq, data in enumerate(chunks):
                tg.execute(
                    "INSERT INTO recording_chunks (session_id, seq, data, written_at)"
                    " VALUES (%s, %s, %s, %s)", (session_id, seq, data, NOW),
                )  # fmt: skip
        whole = b'{"version": 2}\n[0.1, "o", "x"]\n'
        digest = "sha256:" + hashlib.sha256(whole).hexdigest()
        for session_id in (kept, lost):  # `lost` claims the digest of more than it stored
            tg.execute(
                "UPDATE sessions SET recording_digest = %s, recording_bytes = %s WHERE id = %s",
                (digest, len(whole), session_id),
            )
            tg.execute(
                "INSERT INTO outbox (id, topic, key, type, source, subject, occurred_at, payload,"
                " sent_at) VALUES (%s, 'terminal.session.v1', 'k', 'terminal.session.closed', 's',"
                " %s, %s, %s, %s)",
                (uuid.uuid4(), str(session_id), NOW,
                 json.dumps({"recording_digest": digest}).encode(), NOW),
            )  # fmt: skip
    report = audit.audit(_connect(databases), tuple(SCHEMAS), {"ok": True})
    found = [(v.check, v.detail) for v in report.violations if "session" in v.detail]
    assert [c for c, _ in found].count("no session outlives its allocation") == 1
    assert [d for c, d in found if c == "recording kept"] and all(
        str(lost) in d for c, d in found if c == "recording kept"
    )
