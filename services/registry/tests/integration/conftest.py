"""registry on a fresh PostgreSQL database and the real OCI distribution registry (devstack's,
or GPUCLOUD_TEST_OCI_URL / _USERNAME / _PASSWORD), driven in-process through its HTTP app.

Callers: the operator token, and iam-shaped principals from a stand-in verifier
(`token(...)` below): a user with tenant roles (and a second factor when `mfa`), or a service
account bound to one project with a project role. iam's real tokens are used by the e2e test.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from gpucloud_trust import bundle as bundles
from platformkit.auth import Principal
from platformkit.http import build_service_app
from platformkit.service import migrate
from platformkit.settings import ServiceSettings
from registry.bootstrap import DEFINITION
from registry.oci import OciClient
from registry.settings import RegistrySettings

pytestmark = pytest.mark.integration

OPERATOR_TOKEN = "operator-" + uuid.uuid4().hex
OP = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@dataclasses.dataclass(frozen=True)
class Oci:
    url: str
    username: str | None
    password: str | None


@pytest.fixture(scope="session")
def oci_registry() -> Oci:
    url = os.environ.get("GPUCLOUD_TEST_OCI_URL")
    if url:
        return Oci(
            url,
            os.environ.get("GPUCLOUD_TEST_OCI_USERNAME"),
            os.environ.get("GPUCLOUD_TEST_OCI_PASSWORD"),
        )
    from devstack import fleet, infra, oci

    with infra.state_lock():
        started = oci.start(fleet.load())
    return Oci(started.url, started.username, started.password)


@pytest.fixture
def registry_url(fresh_database: str) -> str:
    migrate(DEFINITION, ServiceSettings("registry", database_url=fresh_database))
    return fresh_database


class _Tokens:
    """Stands in for iam's verifier: the token is the JSON of the principal's fields."""

    async def verify(self, token: str) -> Principal:
        data = json.loads(token)
        project_roles = {uuid.UUID(p): frozenset(r) for p, r in data.get("proj", {}).items()}
        service_account = data["kind"] == "service_account"
        return Principal(
            subject=data["sub"],
            kind=data["kind"],
            tenant_id=uuid.UUID(data["tenant"]),
            roles=frozenset(data.get("roles", [])),
            project_ids=frozenset(project_roles) if service_account else None,
            project_roles=project_roles,
            amr=("pwd", "otp") if data.get("mfa") else ("pwd",),
            auth_time=int(time.time()),
        )


def token(
    tenant, *roles, mfa=False, project=None, project_role=None, service_account=False
) -> dict:
    body = {
        "sub": ("sa-" if service_account else "user-") + uuid.uuid4().hex[:8],
        "kind": "service_account" if service_account else "user",
        "tenant": str(tenant),
        "roles": list(roles),
        "mfa": mfa,
    }
    if project is not None:
        body["proj"] = {str(project): [project_role]}
    return {"Authorization": f"Bearer {json.dumps(body)}"}


@pytest.fixture
async def client(registry_url, oci_registry) -> AsyncIterator[AsyncTestClient]:
    settings = ServiceSettings(
        service_name="registry", database_url=registry_url, operator_token=OPERATOR_TOKEN
    )
    app = build_service_app(dataclasses.replace(DEFINITION, kafka=False), settings)
    app.state.token_verifier = _Tokens()
    app.state.registry_settings = RegistrySettings(
        oci_registry.url, oci_registry.username, oci_registry.password, max_blob_bytes=64 << 20
    )
    async with AsyncTestClient(app, timeout=30) as test_client:
        yield test_client


@pytest.fixture
async def oci(oci_registry) -> AsyncIterator[OciClient]:
    client = OciClient(oci_registry.url, oci_registry.username, oci_registry.password)
    yield client
    await client.close()


def build_bundle(root: Path, seed: str = "", config: dict | None = None) -> bundles.Bundle:
    source = root / f"src-{uuid.uuid4().hex[:6]}"
    (source / "bin").mkdir(parents=True)
    (source / "bin" / "serve").write_text(f"#!/bin/sh\necho {seed or uuid.uuid4().hex}\n")
    (source / "weights.bin").write_bytes(os.urandom(300_000))
    return bundles.build(
        source,
        root / f"layout-{uuid.uuid4().hex[:6]}",
        config=config if config is not None else {"cmd": ["bin/serve"]},
    )
