import contextlib
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from billing.app.funds import add_price
from billing.app.tenants import tenant_projection
from billing.bootstrap import DEFINITION
from billing.domain.pricing import PriceVersion
from billing.settings import BillingSettings
from gpucloud_contracts.events.iam import TenantCreated
from gpucloud_contracts.events.metering import UsageRecorded
from platformkit.auth import Principal
from platformkit.db import Database
from platformkit.envelope import CloudEvent, new_event
from platformkit.http import build_service_app
from platformkit.kafka import KafkaSettings
from platformkit.service import migrate
from platformkit.settings import ServiceSettings

WORKER = Path(__file__).with_name("rating_worker.py")
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)

pytestmark = pytest.mark.integration


@pytest.fixture
def billing_url(fresh_database: str) -> str:
    migrate(DEFINITION, ServiceSettings("billing", database_url=fresh_database))
    return fresh_database


@pytest.fixture
async def db(billing_url: str) -> AsyncIterator[Database]:
    database = Database(billing_url, pool_size=2)
    yield database
    await database.dispose()


async def set_price(db: Database, key: str, micros: int, at: dt.datetime = T0, **kw) -> None:
    async with db.unit_of_work() as uow:
        await add_price(uow, PriceVersion(key, "USD", micros, at, **kw))
        await uow.commit()


def usage_event(
    tenant: uuid.UUID,
    *,
    allocation: uuid.UUID | None = None,
    sequence: int = 0,
    seconds: int = 60,
    started_at: dt.datetime = T0,
    price_key: str = "gpu:h100",
    quantity: int = 1,
    project: uuid.UUID | None = None,
) -> CloudEvent:
    allocation = allocation or uuid.uuid4()
    payload = UsageRecorded(
        interval_id=uuid.uuid5(allocation, str(sequence)),
        allocation_id=allocation,
        tenant_id=tenant,
        project_id=project or uuid.UUID(int=1),
        sequence=sequence,
        sku="h100",
        price_key=price_key,
        quantity=quantity,
        started_at=started_at,
        ended_at=started_at + dt.timedelta(seconds=seconds),
        duration_ms=seconds * 1000,
        final=False,
    )
    return new_event(
        type="metering.usage.recorded",
        source="gpuaas",
        subject=str(allocation),
        tenant=str(tenant),
        payload=msgspec.json.encode(payload),
    )


def ledger_snapshot(url: str) -> dict:
    """What must be identical between two runs: transfers and cached balances."""
    with psycopg.connect(url) as conn:
        transfers = conn.execute(
            "SELECT id, transaction_id, debit_account_id, credit_account_id, amount_micros,"
            " kind, leg FROM transfers ORDER BY id"
        ).fetchall()
        accounts = conn.execute(
            "SELECT id, debits_posted, credits_posted FROM accounts ORDER BY id"
        ).fetchall()
        tenants = conn.execute("SELECT id, standing FROM tenants ORDER BY id").fetchall()
    return {"transfers": transfers, "accounts": accounts, "tenants": tenants}


async def send_all(producer, topic: str, events: list[CloudEvent]) -> None:
    futures = [
        await producer.send(topic, value=e.data, key=e.key, headers=e.headers()) for e in events
    ]
    for future in futures:
        await future


def run_worker(
    url: str, kafka: KafkaSettings, topic: str, group: str, expected: int, faults: str = ""
) -> subprocess.CompletedProcess:
    env = {**os.environ, **kafka.as_env(), "GPUCLOUD_FAULTS": faults}
    return subprocess.run(
        [sys.executable, str(WORKER), url, topic, group, str(expected)],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def worker_stats(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def second_billing_url(infra):
    """Another migrated billing database, for a reference run beside the one under test."""
    with infra.scratch_database() as url:
        migrate(DEFINITION, ServiceSettings("billing", database_url=url))
        yield url


OPERATOR_TOKEN = "operator-" + uuid.uuid4().hex
OP = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


class _Tokens:
    """Stands in for iam's token verifier, minting only what iam mints:
    `tenant:<id>:<role>` -> a user with that tenant role; `tenant:<id>:<role>:<project>` ->
    a service account of that project holding `role` there (no tenant role)."""

    async def verify(self, token: str) -> Principal:
        _, tenant, role, *project = token.split(":")
        if project:
            bound = uuid.UUID(project[0])
            return Principal(
                subject=str(uuid.uuid4()),
                kind="service_account",
                tenant_id=uuid.UUID(tenant),
                project_ids=frozenset({bound}),
                project_roles={bound: frozenset({role})},
            )
        return Principal(
            subject="user", kind="user", tenant_id=uuid.UUID(tenant), roles=frozenset({role})
        )


def as_tenant(tenant, role, project=None) -> dict:
    token = f"tenant:{tenant}:{role}" + (f":{project}" if project else "")
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def billing_client(billing_url: str, jobs=()) -> AsyncIterator[AsyncTestClient]:
    """billing's app on its database, without Kafka, with the given jobs (none by default)."""
    settings = ServiceSettings(
        service_name="billing", database_url=billing_url, operator_token=OPERATOR_TOKEN
    )
    app = build_service_app(dataclasses.replace(DEFINITION, kafka=False, jobs=jobs), settings)
    app.state.token_verifier = _Tokens()
    # the sandbox, chosen explicitly (billing refuses to start without a provider); tests
    # of another provider put theirs in app.state.payment_provider
    app.state.billing_settings = BillingSettings(payment_provider="sandbox", sandbox_payments=True)
    async with AsyncTestClient(app) as test_client:
        yield test_client


@pytest.fixture
async def client(billing_url) -> AsyncIterator[AsyncTestClient]:
    async with billing_client(billing_url) as test_client:
        yield test_client


async def new_tenant(db: Database) -> uuid.UUID:
    tenant = uuid.uuid4()
    created = TenantCreated(
        tenant_id=tenant,
        name="Acme",
        slug=f"t-{tenant.hex[:10]}",
        status="active",
        created_at=dt.datetime.now(dt.UTC),
    )
    event = new_event(
        type="iam.tenant.created",
        source="iam",
        subject=str(tenant),
        payload=msgspec.json.encode(created),
    )
    async with db.unit_of_work() as uow:
        await tenant_projection(BillingSettings())(event, uow)
        await uow.commit()
    return tenant


async def outbox_types(db: Database, subject: str) -> list[str]:
    """The event types billing put in its outbox about one subject (a payment), in order."""
    async with db.unit_of_work() as uow:
        rows = await uow.fetch_all(
            "SELECT type FROM outbox WHERE subject = :s ORDER BY seq", {"s": subject}
        )
    return [r["type"] for r in rows]
