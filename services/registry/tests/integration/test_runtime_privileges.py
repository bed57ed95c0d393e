"""registry serving as its runtime role, migrated by its owner: the whole publishing journey
works (the version lock included), and the runtime role can neither rewrite nor remove a
version, bundle, statement or promotion, nor turn their triggers off."""

import dataclasses
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from gpucloud_trust.keys import SigningKey
from platformkit.http import build_service_app
from platformkit.service import migrate
from platformkit.settings import ServiceSettings
from registry.bootstrap import DEFINITION
from registry.settings import RegistrySettings

from .conftest import OPERATOR_TOKEN, _Tokens, build_bundle
from .helpers import Publisher

pytestmark = pytest.mark.integration

REFUSED = [
    "UPDATE artifacts SET size = size",
    "UPDATE bundles SET total_size = total_size",
    "UPDATE bundle_blobs SET size = size",
    "UPDATE versions SET published_by = 'x'",
    "UPDATE statements SET kind = kind",
    "UPDATE promotions SET reason = 'x'",
    "DELETE FROM artifacts",
    "DELETE FROM bundles",
    "DELETE FROM bundle_blobs",
    "DELETE FROM versions",
    "DELETE FROM statements",
    "DELETE FROM promotions",
    "TRUNCATE artifacts, bundles, bundle_blobs, versions, statements, promotions",
    "TRUNCATE promotions",
    "UPDATE witnessed_checkpoints SET note = note",
    "DELETE FROM witnessed_checkpoints",
    "DELETE FROM witness_conflicts",
    "ALTER TABLE promotions DISABLE TRIGGER promotions_immutable",
    "DROP TRIGGER versions_immutable ON versions",
    "SET session_replication_role = replica",
    "CREATE TABLE shadow_promotions (id int)",
]


@pytest.fixture(scope="module")
def database_roles(make_database_roles) -> Iterator:
    with make_database_roles() as roles:
        yield roles


@pytest.fixture(scope="module")
def runtime(database_roles) -> ServiceSettings:
    settings = ServiceSettings(
        "registry",
        database_url=database_roles.runtime_url,
        database_owner_url=database_roles.owner_url,
        operator_token=OPERATOR_TOKEN,
    )
    assert settings.runtime_role == database_roles.runtime_role
    migrate(DEFINITION, settings)
    return settings


@pytest.fixture
async def runtime_client(runtime, oci_registry) -> AsyncIterator[AsyncTestClient]:
    app = build_service_app(dataclasses.replace(DEFINITION, kafka=False), runtime)
    app.state.token_verifier = _Tokens()
    app.state.registry_settings = RegistrySettings(
        oci_registry.url, oci_registry.username, oci_registry.password
    )
    async with AsyncTestClient(app, timeout=30) as client:
        yield client


async def test_the_runtime_role_publishes_signs_promotes_and_yanks(runtime_client, tmp_path):
    publisher = Publisher(runtime_client)
    signer = SigningKey.generate()
    await publisher.trust(signer)
    await publisher.create_app()
    bundle = build_bundle(tmp_path)
    await publisher.upload(bundle)
    await publisher.publish("1.0.0", bundle)
    await publisher.attach("1.0.0", publisher.release(bundle.digest, "1.0.0", signer))
    for channel in ("dev", "staging"):
        response = await publisher.promote("1.0.0", channel)
        assert response.status_code == 201, response.text
    response = await runtime_client.post(
        f"{publisher.version_path('1.0.0')}/yank", json={"reason": "cve"}, headers=publisher.owner
    )
    assert response.status_code == 200, response.text
    assert response.json()["yanked"] is True


@pytest.mark.parametrize("statement", REFUSED)
def test_the_runtime_role_cannot_rewrite_the_catalog(runtime, database_roles, statement) -> None:
    with psycopg.connect(database_roles.runtime_url) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
