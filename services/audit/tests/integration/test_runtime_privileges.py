"""audit serving as its runtime role, migrated by its owner: leaves are appended, checkpoints
signed, never rewritten, and the append-only triggers stay on."""

import datetime as dt
from collections.abc import Iterator

import psycopg
import pytest

from audit.app.handlers import record_heartbeat
from audit.app.log import AuditLog, LogConfig, source_event
from audit.bootstrap import DEFINITION
from gpucloud_contracts.events.platform import ServiceHeartbeat
from platformkit.db import Database
from platformkit.envelope import new_event
from platformkit.service import migrate
from platformkit.settings import ServiceSettings

pytestmark = pytest.mark.integration

REFUSED = [
    "UPDATE audit_leaves SET leaf = ''::bytea",
    "DELETE FROM audit_leaves",
    "TRUNCATE audit_leaves CASCADE",
    "DELETE FROM audit_tiles",
    "UPDATE audit_checkpoints SET note = ''",
    "DELETE FROM audit_signing_keys",
    "TRUNCATE audit_tree_heads CASCADE",
    "UPDATE audit_records SET payload = '{}'",
    "DELETE FROM audit_records",
    "UPDATE audit_evidence SET outcome = 'fail'",
    "DELETE FROM audit_evidence",
    "TRUNCATE audit_evidence",
    "ALTER TABLE audit_leaves DISABLE TRIGGER audit_leaves_append_only",
    "DROP TRIGGER audit_leaves_append_only ON audit_leaves",
    "SET session_replication_role = replica",
]


@pytest.fixture(scope="module")
def database_roles(make_database_roles) -> Iterator:
    """One migrated database for the module: the refusals change nothing."""
    with make_database_roles() as roles:
        yield roles


@pytest.fixture(scope="module")
def runtime(database_roles) -> ServiceSettings:
    settings = ServiceSettings(
        "audit",
        database_url=database_roles.runtime_url,
        database_owner_url=database_roles.owner_url,
    )
    migrate(DEFINITION, settings)
    return settings


async def test_the_runtime_role_appends_leaves_signs_and_keeps_the_status(runtime) -> None:
    db = Database(runtime.database_url, pool_size=1)
    log = AuditLog(LogConfig(origin="audit.test/runtime", checkpoint_every=10_000))
    now = dt.datetime.now(dt.UTC)
    beat = ServiceHeartbeat(
        service="iam", instance="i-1", version="1", git_sha="abcdef0", ready=True,
        checks={}, started_at=now, sent_at=now,
    )  # fmt: skip
    try:
        for _ in range(2):  # the second beat updates the service's row
            async with db.unit_of_work() as uow:
                created = new_event(
                    type="iam.tenant.created", source="iam", subject="t", payload={}
                )
                assert await log.append(uow, [source_event(created)]) == 1
                heartbeat = new_event(
                    type="platform.service.heartbeat", source="iam", subject="i-1", payload=beat
                )
                await record_heartbeat(heartbeat, uow)
                await uow.commit()
        assert await log.checkpoint(db) is not None  # the key is stored, the checkpoint signed
        async with db.unit_of_work() as uow:
            leaves = await uow.fetch_one("SELECT count(*) AS n FROM audit_leaves")
            status = await uow.fetch_one("SELECT count(*) AS n FROM service_status")
        assert leaves["n"] == 2 and status["n"] == 1
    finally:
        await db.dispose()


@pytest.mark.parametrize("statement", REFUSED)
def test_the_runtime_role_cannot_rewrite_the_log(runtime, database_roles, statement) -> None:
    with psycopg.connect(database_roles.runtime_url) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
