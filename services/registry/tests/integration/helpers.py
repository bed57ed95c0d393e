"""One tenant's publishing session against the in-process registry app."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from dataclasses import dataclass, field

from gpucloud_contracts.events.iam import ProjectCreated
from gpucloud_trust import intoto
from gpucloud_trust.bundle import Bundle
from gpucloud_trust.keys import SigningKey
from platformkit.envelope import new_event
from registry.app.projects import project_handler

from .conftest import token


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def project_created(client, tenant: uuid.UUID, project: uuid.UUID) -> None:
    """What iam.project.created does to registry's projection (its own consumer's handler)."""
    payload = ProjectCreated(
        project_id=project,
        tenant_id=tenant,
        name="Project",
        slug=f"p-{project.hex[:8]}",
        created_at=dt.datetime.now(dt.UTC),
    )
    event = new_event(
        type="iam.project.created", source="iam", subject=str(project), payload=payload
    )
    async with client.app.state.runtime.db.unit_of_work() as uow:
        await project_handler()(event, uow)
        await uow.commit()


@dataclass
class Publisher:
    client: object
    tenant: uuid.UUID = field(default_factory=uuid.uuid4)
    project: uuid.UUID = field(default_factory=uuid.uuid4)
    app: str = field(default_factory=lambda: f"app-{uuid.uuid4().hex[:8]}")

    @property
    def owner(self) -> dict[str, str]:
        return token(self.tenant, "owner", mfa=True)

    @property
    def base(self) -> str:
        return f"/v1/registry/tenants/{self.tenant}/projects/{self.project}/apps"

    def version_path(self, version: str) -> str:
        return f"{self.base}/{self.app}/versions/{version}"

    async def create_app(self, headers=None):
        await project_created(self.client, self.tenant, self.project)
        response = await self.client.post(
            self.base, json={"name": self.app}, headers=(headers or self.owner) | key()
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def upload(self, bundle: Bundle, headers=None) -> None:
        for descriptor in bundle.manifest.blobs:
            response = await self.client.put(
                f"{self.base}/{self.app}/blobs/{descriptor.digest}",
                content=bundle.blob_path(descriptor.digest).read_bytes(),
                headers=headers or self.owner,
            )
            assert response.status_code in (200, 201), response.text

    async def publish(self, version: str, bundle: Bundle, headers=None, expect: int = 201):
        response = await self.client.post(
            f"{self.base}/{self.app}/versions",
            json={"version": version, "manifest": base64.b64encode(bundle.manifest.raw).decode()},
            headers=(headers or self.owner) | key(),
        )
        assert response.status_code == expect, response.text
        return response.json()

    async def trust(self, signer: SigningKey, name: str = "ci") -> dict:
        response = await self.client.post(
            f"/v1/registry/tenants/{self.tenant}/keys",
            json={"public_key": signer.public.to_pem(), "name": name},
            headers=self.owner | key(),
        )
        assert response.status_code == 201, response.text
        return response.json()

    def release(self, digest: str, version: str, *signers: SigningKey) -> str:
        statement = intoto.release_statement(
            digest, tenant=str(self.tenant), app=self.app, version=version
        )
        return statement.sign(list(signers)).to_json().decode()

    def evidence(self, digest: str, kind: str, signer: SigningKey) -> str:
        statement = intoto.evidence_statement(
            digest, kind=kind, uri=f"https://evidence.test/{kind}"
        )
        return statement.sign([signer]).to_json().decode()

    async def attach(self, version: str, envelope: str, headers=None, expect: int = 201):
        response = await self.client.post(
            f"{self.version_path(version)}/statements",
            json={"envelope": envelope},
            headers=headers or self.owner,
        )
        assert response.status_code == expect, response.text
        return response.json()

    async def promote(self, version: str, channel: str, headers=None):
        return await self.client.post(
            f"{self.version_path(version)}/promotions",
            json={"channel": channel},
            headers=headers or self.owner,
        )

    async def set_policy(self, channel: str, **policy) -> None:
        response = await self.client.put(
            f"/v1/registry/tenants/{self.tenant}/policies/{channel}",
            json=policy,
            headers=self.owner,
        )
        assert response.status_code == 200, response.text
