"""billing serving as its runtime role (the login of GPUCLOUD_DATABASE_URL), migrated by its
owner: the ledger and the price book take new rows and never an edit, and nothing the runtime
role can do turns their append-only triggers off."""

import dataclasses
from collections.abc import Iterator

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from billing.bootstrap import DEFINITION
from billing.settings import BillingSettings
from platformkit.http import build_service_app
from platformkit.service import migrate
from platformkit.settings import ServiceSettings

from .conftest import OP, OPERATOR_TOKEN, T0, _Tokens, new_tenant

pytestmark = pytest.mark.integration

REFUSED = [
    "UPDATE transfers SET amount_micros = 1",
    "DELETE FROM transfers",
    "TRUNCATE transfers",
    "UPDATE prices SET micros_per_gpu_hour = 0",
    "DELETE FROM prices",
    "TRUNCATE prices",
    "ALTER TABLE transfers DISABLE TRIGGER transfers_append_only",
    "ALTER TABLE prices DISABLE TRIGGER prices_append_only",
    "DROP TRIGGER transfers_append_only ON transfers",
    "ALTER TABLE transfers OWNER TO CURRENT_USER",
    "SET session_replication_role = replica",  # would skip every trigger of the session
    "CREATE TABLE shadow_ledger (id int)",
]


@pytest.fixture(scope="module")
def database_roles(make_database_roles) -> Iterator:
    """One migrated database for the module: the refusals change nothing."""
    with make_database_roles() as roles:
        yield roles


@pytest.fixture(scope="module")
def runtime(database_roles) -> ServiceSettings:
    """billing's settings as the fleet runs it: migrated by the owner, serving as runtime."""
    settings = ServiceSettings(
        "billing",
        database_url=database_roles.runtime_url,
        database_owner_url=database_roles.owner_url,
        operator_token=OPERATOR_TOKEN,
    )
    assert settings.runtime_role == database_roles.runtime_role
    migrate(DEFINITION, settings)
    return settings


async def test_the_runtime_role_serves_billing(runtime) -> None:
    app = build_service_app(dataclasses.replace(DEFINITION, kafka=False), runtime)
    app.state.token_verifier = _Tokens()
    # billing starts only with a provider chosen: the sandbox, explicitly
    app.state.billing_settings = BillingSettings(payment_provider="sandbox", sandbox_payments=True)
    async with AsyncTestClient(app) as client:
        tenant = await new_tenant(client.app.state.runtime.db)
        price = {
            "price_key": "gpu:h100",
            "micros_per_gpu_hour": 1,
            "effective_from": T0.isoformat(),
        }
        assert (await client.post("/v1/billing/prices", headers=OP, json=price)).status_code == 201
        top_up = await client.post(
            f"/v1/billing/tenants/{tenant}/top-ups",
            headers={**OP, "Idempotency-Key": "runtime-1"},
            json={"amount_micros": 5_000_000},
        )
        assert top_up.status_code == 201, top_up.text
        ledger = await client.get(f"/v1/billing/tenants/{tenant}/ledger", headers=OP)
        assert ledger.status_code == 200 and ledger.json()["items"], ledger.text


@pytest.mark.parametrize("statement", REFUSED)
def test_the_runtime_role_cannot_rewrite_the_ledger_or_the_price_book(
    runtime, database_roles, statement
) -> None:
    with psycopg.connect(database_roles.runtime_url) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_the_owner_still_can(runtime, database_roles) -> None:
    """The refusals are the role's, not the table's: the owner (migrations) may alter it."""
    with psycopg.connect(database_roles.owner_url) as conn:
        conn.execute("ALTER TABLE transfers DISABLE TRIGGER transfers_append_only")
        conn.rollback()
