"""appplatform as it runs in the fleet, on real Kafka and PostgreSQL, in this process: its
app (through litestar's test client, whose lifespan runs the kit's runtime: consumers on the
real topics, the controller's jobs; no outbox relay: what it would publish is read from its
outbox), migrated by the database's owner role and serving as its runtime role.

The families it reads are played by their events: the test publishes `registry.release.*`,
`iam.project.*`, `iam.tenant.*`, `gpuaas.node.*` and `gpuaas.allocation.*` records (contract
payloads in CloudEvents envelopes, the source their topic's family) as those services'
relays do. Callers are iam-shaped principals from a stand-in verifier (`token(...)`): the
token is the JSON of the principal's fields (iam's real tokens are the e2e tests').
One stack serves the whole module; every test uses its own tenants.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from appplatform.bootstrap import DEFINITION
from gpucloud_contracts.events.gpuaas import AllocationChanged, ReplicaOwner
from gpucloud_contracts.events.iam import ProjectCreated, TenantCreated
from gpucloud_contracts.events.registry import Blob, Bundle, ReleaseChanged
from platformkit.auth import Principal
from platformkit.envelope import new_event
from platformkit.http import build_service_app
from platformkit.service import migrate
from platformkit.settings import ServiceSettings

pytestmark = pytest.mark.integration

OPERATOR_TOKEN = "operator-" + uuid.uuid4().hex
PLATFORM = uuid.UUID(int=0)


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
            amr=("pwd",),
            auth_time=int(time.time()),
        )


def token(tenant, *roles, project=None, project_role=None, service_account=False) -> dict:
    body: dict[str, Any] = {
        "sub": ("sa-" if service_account else "user-") + uuid.uuid4().hex[:8],
        "kind": "service_account" if service_account else "user",
        "tenant": str(tenant),
        "roles": list(roles),
    }
    if project is not None:
        body["proj"] = {str(project): [project_role]}
    return {"Authorization": f"Bearer {json.dumps(body)}"}


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def manifest(app: str, version: str, **fields: Any) -> dict[str, Any]:
    """A valid app manifest (an http app with a probe, one GPU by memory range)."""
    data: dict[str, Any] = {
        "schema_version": 1,
        "name": app,
        "version": version,
        "description": f"the {app} app",
        "command": ["python", "-m", "http.server", "${PORT}"],
        "env": {
            "API_KEY": {"required_at_launch": True, "description": "the app's key"},
            "MODE": {"value": "fast"},
        },
        "ports": [{"name": "http", "port": 8000, "expose": True}],
        "resources": {"gpu_memory_gb": {"min": 10, "max": 80}},
        "probe": {"path": "/", "port": "http", "interval_s": 1, "timeout_s": 1},
    }
    data.update(fields)
    return data


@dataclasses.dataclass
class Release:
    """One version of an app as registry's events describe it."""

    tenant: uuid.UUID
    app: str
    version: str
    app_manifest: dict[str, Any] | None
    version_id: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)
    app_id: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)
    project: uuid.UUID | None = None

    @property
    def digest(self) -> str:
        return digest(f"{self.version_id}")

    def event(self, sequence: int, channels=(), yanked=False) -> ReleaseChanged:
        config = Blob(digest=digest(f"c{self.version_id}"), size=10, media_type="x")
        return ReleaseChanged(
            tenant_id=self.tenant,
            app_id=self.app_id,
            app=self.app,
            version_id=self.version_id,
            version=self.version,
            bundle=Bundle(
                manifest_digest=self.digest,
                media_type="application/vnd.oci.image.manifest.v1+json",
                size=100,
                config=config,
                layers=[],
                app_manifest=self.app_manifest,
            ),
            statements=[],
            signers=[],
            channels=list(channels),
            yanked=yanked,
            sequence=sequence,
            occurred_at=dt.datetime.now(dt.UTC),
            project_id=self.project,
        )


@dataclasses.dataclass
class Stack:
    client: AsyncTestClient
    database: str  # the owner's URL (the test's own SQL)
    producer: Any
    runtime_database: str = ""  # the runtime role's, which appplatform serves with

    async def publish(self, topic: str, type_: str, subject: Any, payload: Any, tenant=None):
        event = new_event(
            type=type_,
            source=topic.split(".", 1)[0],
            subject=str(subject),
            payload=msgspec.json.encode(payload),
            tenant=str(tenant) if tenant else None,
        )
        await self.producer.send_and_wait(
            topic, value=event.data, key=event.key, headers=event.headers()
        )
        return event.id

    async def consumed(self, *event_ids: uuid.UUID) -> None:
        """Wait until appplatform's consumers have applied these events (their inbox rows)."""
        await self.until(
            lambda: (
                self.sql(
                    "SELECT count(DISTINCT event_id) FROM inbox WHERE event_id = ANY(%s)",
                    list(event_ids),
                )[0][0]
                == len(event_ids)
            ),
            what=f"{len(event_ids)} events consumed",
        )

    async def release(self, release: Release, sequence: int, channels=(), yanked=False):
        if yanked:
            type_ = "registry.release.yanked"
        elif sequence == 1:
            type_ = "registry.version.published"
        else:
            type_ = "registry.release.promoted"
        return await self.publish(
            "registry.release.v1",
            type_,
            release.version_id,
            release.event(sequence, channels, yanked),
            release.tenant,
        )

    async def tenant(self, status: str = "active") -> tuple[uuid.UUID, uuid.UUID]:
        """A tenant with one project, both projected."""
        tenant, project = uuid.uuid4(), uuid.uuid4()
        now = dt.datetime.now(dt.UTC)
        await self.publish(
            "iam.tenant.v1",
            "iam.tenant.created",
            tenant,
            TenantCreated(
                tenant_id=tenant, name="T", slug=f"t-{tenant.hex[:10]}", status=status,
                created_at=now,
            ),
            tenant,
        )  # fmt: skip
        await self.project(tenant, project)
        return tenant, project

    async def project(self, tenant: uuid.UUID, project: uuid.UUID) -> None:
        await self.publish(
            "iam.project.v1",
            "iam.project.created",
            project,
            ProjectCreated(
                project_id=project, tenant_id=tenant, name="P", slug=f"p-{project.hex[:8]}",
                created_at=dt.datetime.now(dt.UTC),
            ),
            tenant,
        )  # fmt: skip
        await self.until(
            lambda: self.sql("SELECT 1 FROM projects WHERE project_id = %s", project),
            what="the project projected",
        )

    async def allocation(
        self,
        replica: dict[str, Any] | tuple[Any, Any],
        kind: str,
        *,
        tenant: uuid.UUID,
        project: uuid.UUID,
        allocation: uuid.UUID | None = None,
        reason: str | None = None,
        node: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """gpuaas's event about the allocation of a replica ((replica_id, instance_id))."""
        replica_id, instance_id = replica
        allocation = allocation or uuid.uuid5(uuid.NAMESPACE_URL, str(replica_id))
        state = {"workload_ready": "running", "workload_unready": "running"}.get(kind, kind)
        return await self.publish(
            "gpuaas.allocation.v1",
            f"gpuaas.allocation.{kind}",
            allocation,
            AllocationChanged(
                allocation_id=allocation, tenant_id=tenant, project_id=project, state=state,
                sku="h100-80gb", quantity=1, occurred_at=dt.datetime.now(dt.UTC),
                reason=reason, node_id=node,
                replica=ReplicaOwner(replica_id=uuid.UUID(str(replica_id)),
                                     instance_id=uuid.UUID(str(instance_id))),
            ),
            tenant,
        )  # fmt: skip

    def commands(self, instance_id: Any, type_: str | None = None) -> list[dict[str, Any]]:
        """The replica commands appplatform wrote to its outbox for an instance, in order."""
        rows = self.sql(
            "SELECT type, payload FROM outbox WHERE topic = 'appplatform.replica.v1'"
            " AND key = %s ORDER BY seq",
            str(instance_id),
        )
        return [{"type": t, **json.loads(bytes(p))} for t, p in rows if type_ is None or t == type_]

    def instance_events(self, instance_id: Any) -> list[str]:
        rows = self.sql(
            "SELECT type FROM outbox WHERE topic = 'appplatform.instance.v1' AND key = %s"
            " ORDER BY seq",
            str(instance_id),
        )
        return [t for (t,) in rows]

    def sql(self, query: str, *params: Any) -> list[tuple]:
        with psycopg.connect(self.database, autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    async def until(self, condition, within: float = 20.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            value = await asyncio.to_thread(condition)
            if value:
                return value
            await asyncio.sleep(0.05)
        raise AssertionError(f"{what} not met within {within} s")

    async def until_http(self, call, check, within: float = 20.0, what: str = "answer") -> Any:
        deadline = time.monotonic() + within
        last = None
        while time.monotonic() < deadline:
            last = await call()
            if check(last):
                return last
            await asyncio.sleep(0.1)
        raise AssertionError(f"{what} not met within {within} s: {last and last.text}")


@pytest.fixture(scope="module")
async def stack(infra, make_database_roles) -> AsyncIterator[Stack]:
    from platformkit.kafka import producer as kafka_producer
    from platformkit.provision import provision

    await provision(infra.kafka, acls=False, report=lambda _: None)
    producer = kafka_producer(infra.kafka, "appplatform-tests")
    await producer.start()
    with make_database_roles() as roles:
        settings = ServiceSettings(
            service_name=f"appplatform-test-{uuid.uuid4().hex[:8]}",
            database_url=roles.runtime_url,
            database_owner_url=roles.owner_url,
            kafka=infra.kafka,
            operator_token=OPERATOR_TOKEN,
            heartbeat_interval_s=0,
            outbox_poll_interval_s=0.5,
        )
        # No outbox relay: the fleet's real gpuaas consumes appplatform.replica.v1 and would
        # answer these tests' commands for bundles it never saw (rejections). The tests read
        # what appplatform would publish from its outbox and play gpuaas themselves.
        definition = dataclasses.replace(DEFINITION, relay=False)
        migrate(definition, settings)
        app = build_service_app(definition, settings)
        app.state.token_verifier = _Tokens()
        try:
            async with AsyncTestClient(app, timeout=30) as client:
                yield Stack(client, roles.owner_url, producer, roles.runtime_url)
        finally:
            await producer.stop()
