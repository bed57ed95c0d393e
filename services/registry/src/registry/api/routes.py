"""registry's HTTP routes (behind the gateway at /v1/registry). Every route declares its
action (api/authorization.py); docs/registry.md lists them with their permissions."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post, put
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from litestar.response import Stream

from gpucloud_contracts.events.registry import KeyChanged, ReleaseChanged, SignedStatement
from gpucloud_trust.bundle import MANIFEST_MEDIA_TYPE
from gpucloud_trust.digests import digest_bytes
from platformkit.auth import Principal
from platformkit.db import Database
from platformkit.errors import NotFound, ValidationFailed
from platformkit.idempotency import check_key
from registry.api.authorization import guarded
from registry.api.schemas import (
    AppCreate,
    AppOut,
    AppPage,
    BlobOut,
    KeyCreate,
    KeyList,
    KeyRenew,
    KeyRevoke,
    KeyRotate,
    KeyRotation,
    PolicyIn,
    PolicyList,
    PolicyOut,
    PromotionCreate,
    StatementAttach,
    VersionPage,
    VersionPublish,
    VersionSummary,
    WitnessConflict,
    WitnessConflictList,
    WitnessedCheckpoint,
    YankCreate,
)
from registry.app import catalog, keys, promotions, statements, witness
from registry.app.catalog import AppRef
from registry.app.common import Actor
from registry.domain.apps import PLATFORM, is_platform
from registry.domain.channels import Channel
from registry.domain.permissions import Action
from registry.oci import OciClient

IdempotencyKey = Annotated[str | None, Parameter(header="Idempotency-Key")]
After = Annotated[str, Parameter(max_length=63)]
Limit = Annotated[int, Parameter(ge=1, le=500)]


def _actor(principal: Principal) -> Actor:
    return Actor(principal.subject, principal.kind)


def _oci(state: State) -> OciClient:
    return state.oci


def _json(status_body: tuple[int, bytes]) -> Response[bytes]:
    status, body = status_body
    return Response(body, status_code=status, media_type="application/json")


def _spec(model: Any, description: str) -> ResponseSpec:
    return ResponseSpec(model, description=description, generate_examples=False)


class TenantController(Controller):
    """Trusted keys and promotion policies: the tenant's."""

    path = "/v1/registry/tenants/{tenant_id:uuid}"
    tags = ["registry"]

    @get("/keys", operation_id="listTrustedKeys", **guarded(Action.READ))
    async def list_keys(self, tenant_id: uuid.UUID, db: Database) -> KeyList:
        return KeyList(items=await keys.list_keys(db, tenant_id))

    @post(
        "/keys",
        operation_id="addTrustedKey",
        status_code=201,
        responses={201: _spec(KeyChanged, "The key, now trusted")},
        **guarded(Action.KEYS_MANAGE),
    )
    async def add_key(
        self,
        tenant_id: uuid.UUID,
        data: KeyCreate,
        db: Database,
        principal: Principal,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[bytes]:
        return _json(
            await keys.add_key(
                db,
                tenant_id,
                data.public_key,
                data.name,
                _actor(principal),
                check_key(idempotency_key),
                data.expires_at,
            )
        )

    @post(
        "/keys/{key_id:uuid}/rotate",
        operation_id="rotateTrustedKey",
        status_code=201,
        responses={201: _spec(KeyRotation, "The rotated key and its successor")},
        **guarded(Action.KEYS_MANAGE),
    )
    async def rotate_key(
        self,
        tenant_id: uuid.UUID,
        key_id: uuid.UUID,
        data: KeyRotate,
        db: Database,
        principal: Principal,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[bytes]:
        return _json(
            await keys.rotate_key(
                db,
                tenant_id,
                key_id,
                data.successor_public_key,
                data.name,
                _actor(principal),
                check_key(idempotency_key),
                data.expires_at,
            )
        )

    @post(
        "/keys/{key_id:uuid}/renew",
        operation_id="renewTrustedKey",
        status_code=200,
        **guarded(Action.KEYS_MANAGE),
    )
    async def renew_key(
        self, tenant_id: uuid.UUID, key_id: uuid.UUID, data: KeyRenew, db: Database
    ) -> KeyChanged:
        """Set when the tenant's trust in the key ends (null: never)."""
        return await keys.renew_key(db, tenant_id, key_id, data.expires_at)

    @post(
        "/keys/{key_id:uuid}/revoke",
        operation_id="revokeTrustedKey",
        status_code=200,
        **guarded(Action.KEYS_MANAGE),
    )
    async def revoke_key(
        self,
        tenant_id: uuid.UUID,
        key_id: uuid.UUID,
        data: KeyRevoke,
        db: Database,
        principal: Principal,
    ) -> KeyChanged:
        return await keys.revoke_key(db, tenant_id, key_id, data.reason, _actor(principal))

    @get("/policies", operation_id="listPromotionPolicies", **guarded(Action.READ))
    async def list_policies(self, tenant_id: uuid.UUID, db: Database) -> PolicyList:
        return PolicyList(items=[PolicyOut(**p) for p in await keys.list_policies(db, tenant_id)])

    @put(
        "/policies/{channel:str}", operation_id="setPromotionPolicy", **guarded(Action.KEYS_MANAGE)
    )
    async def set_policy(
        self, tenant_id: uuid.UUID, channel: str, data: PolicyIn, db: Database, principal: Principal
    ) -> PolicyOut:
        try:
            target = Channel(channel)
        except ValueError:
            raise ValidationFailed.for_field("channel", "one of dev, staging, stable") from None
        out = await keys.set_policy(
            db,
            tenant_id,
            target,
            data.threshold,
            data.required_key_ids,
            data.required_evidence,
            _actor(principal),
        )
        return PolicyOut(**out)


APP = "/apps/{app:str}"
VERSION = APP + "/versions/{version:str}"
_MANIFEST: dict[str, Any] = {
    "responses": {
        200: ResponseSpec(
            # the exact bytes, whose sha256 is the bundle digest; they are an OCI image
            # manifest, a JSON object (a +json media type: clients and schemathesis parse it)
            dict[str, Any],
            description="The manifest bytes (an OCI image manifest, served byte for byte)",
            media_type=MANIFEST_MEDIA_TYPE,
            generate_examples=False,
        )
    },
}


class ProjectController(Controller):
    """Apps of a project: blobs, versions, statements, promotions."""

    path = "/v1/registry/tenants/{tenant_id:uuid}/projects/{project_id:uuid}"
    tags = ["registry"]

    @get("/apps", operation_id="listApps", **guarded(Action.READ))
    async def list_apps(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        db: Database,
        limit: Limit = 100,
        after: After = "",
    ) -> AppPage:
        rows = await catalog.list_apps(db, tenant_id, project_id, limit, after)
        return AppPage(
            items=[AppOut(**r) for r in rows],
            next_after=rows[-1]["name"] if len(rows) == limit else None,
        )

    @post(
        "/apps",
        operation_id="createApp",
        status_code=201,
        responses={201: _spec(AppOut, "The app")},
        **guarded(Action.PUBLISH),
    )
    async def create_app(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        data: AppCreate,
        db: Database,
        principal: Principal,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[bytes]:
        if is_platform(tenant_id) != is_platform(project_id):
            raise ValidationFailed.for_field(
                "project_id",
                "the platform namespace is tenant and project 00000000-...-000000000000",
            )
        return _json(
            await catalog.create_app(
                db,
                tenant_id,
                project_id,
                data.name,
                data.description,
                _actor(principal),
                check_key(idempotency_key),
            )
        )

    @get(APP, operation_id="getApp", **guarded(Action.READ))
    async def get_app(
        self, tenant_id: uuid.UUID, project_id: uuid.UUID, app: str, db: Database
    ) -> AppOut:
        return AppOut(**await catalog.get_app(db, AppRef(tenant_id, project_id, app)))

    @put(
        APP + "/blobs/{digest:str}",
        operation_id="uploadBlob",
        status_code=201,
        request_max_body_size=None,  # streamed and limited by GPUCLOUD_REGISTRY_MAX_BLOB_BYTES
        responses={
            201: _spec(BlobOut, "Stored: the bytes hashed to the digest"),
            200: _spec(BlobOut, "Already stored (the body was not read)"),
        },
        **guarded(Action.PUBLISH),
    )
    async def upload_blob(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        app: str,
        digest: str,
        request: Request[Any, Any, Any],
        db: Database,
        state: State,
        principal: Principal,
    ) -> Response[BlobOut]:
        created, size = await catalog.upload_blob(
            db,
            _oci(state),
            AppRef(tenant_id, project_id, app),
            digest,
            request.stream(),
            _actor(principal),
            state.registry_settings.max_blob_bytes,
        )
        return Response(BlobOut(digest, size, created), status_code=201 if created else 200)

    @get(
        APP + "/blobs/{digest:str}",
        operation_id="getBlob",
        responses={
            200: ResponseSpec(
                bytes,
                description="The blob's bytes",
                media_type="application/octet-stream",
                generate_examples=False,
            )
        },
        **guarded(Action.READ),
    )
    async def get_blob(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        app: str,
        digest: str,
        db: Database,
        state: State,
    ) -> Stream:
        return await _blob_stream(db, _oci(state), AppRef(tenant_id, project_id, app), digest)

    @get(APP + "/versions", operation_id="listVersions", **guarded(Action.READ))
    async def list_versions(
        self, tenant_id: uuid.UUID, project_id: uuid.UUID, app: str, db: Database
    ) -> VersionPage:
        rows = await catalog.list_versions(db, AppRef(tenant_id, project_id, app))
        return VersionPage(items=[VersionSummary(**r) for r in rows])

    @post(
        APP + "/versions",
        operation_id="publishVersion",
        status_code=201,
        responses={201: _spec(ReleaseChanged, "The published release, on no channel yet")},
        **guarded(Action.PUBLISH),
    )
    async def publish_version(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        app: str,
        data: VersionPublish,
        db: Database,
        state: State,
        principal: Principal,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[bytes]:
        return _json(
            await catalog.publish_version(
                db,
                _oci(state),
                AppRef(tenant_id, project_id, app),
                data.version,
                data.manifest,
                _actor(principal),
                check_key(idempotency_key),
            )
        )

    @get(VERSION, operation_id="getVersion", **guarded(Action.READ))
    async def get_version(
        self, tenant_id: uuid.UUID, project_id: uuid.UUID, app: str, version: str, db: Database
    ) -> ReleaseChanged:
        return await catalog.get_release(db, AppRef(tenant_id, project_id, app), version)

    @get(VERSION + "/manifest", operation_id="getManifest", **_MANIFEST, **guarded(Action.READ))
    async def get_manifest(
        self, tenant_id: uuid.UUID, project_id: uuid.UUID, app: str, version: str, db: Database
    ) -> Response[bytes]:
        """The bundle's manifest bytes (their sha256 is the bundle digest)."""
        return await _manifest(db, AppRef(tenant_id, project_id, app), version)

    @post(
        VERSION + "/statements",
        operation_id="attachStatement",
        status_code=201,
        responses={
            201: _spec(SignedStatement, "Attached"),
            200: _spec(SignedStatement, "This very envelope was attached before"),
        },
        **guarded(Action.PUBLISH),
    )
    async def attach_statement(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        app: str,
        version: str,
        data: StatementAttach,
        db: Database,
        principal: Principal,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[bytes]:
        return _json(
            await statements.attach_statement(
                db,
                AppRef(tenant_id, project_id, app),
                version,
                data.envelope,
                _actor(principal),
                check_key(idempotency_key),
            )
        )

    @post(
        VERSION + "/promotions",
        operation_id="promoteVersion",
        status_code=201,
        **guarded(Action.PROMOTE),
    )
    async def promote(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        app: str,
        version: str,
        data: PromotionCreate,
        db: Database,
        principal: Principal,
    ) -> ReleaseChanged:
        return await promotions.promote(
            db,
            AppRef(tenant_id, project_id, app),
            version,
            Channel(data.channel),
            _actor(principal),
        )

    @post(VERSION + "/yank", operation_id="yankVersion", status_code=200, **guarded(Action.PROMOTE))
    async def yank(
        self,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        app: str,
        version: str,
        data: YankCreate,
        db: Database,
        principal: Principal,
    ) -> ReleaseChanged:
        return await promotions.yank(
            db, AppRef(tenant_id, project_id, app), version, data.reason, _actor(principal)
        )


async def _blob_stream(db: Database, oci: OciClient, ref: AppRef, digest: str) -> Stream:
    upstream = await catalog.open_blob(db, oci, ref, digest)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_bytes(1 << 20):
                yield chunk
        finally:
            await upstream.aclose()

    headers = {"Docker-Content-Digest": digest}
    if "content-length" in upstream.headers:
        headers["Content-Length"] = upstream.headers["content-length"]
    return Stream(body(), media_type="application/octet-stream", headers=headers)


async def _manifest(db: Database, ref: AppRef, version: str) -> Response[bytes]:
    raw, media_type = await catalog.get_manifest(db, ref, version)
    headers = {"Docker-Content-Digest": digest_bytes(raw)}
    return Response(raw, media_type=media_type, headers=headers)


def _public(app: str) -> AppRef:
    return AppRef(PLATFORM, None, app)


class PublicController(Controller):
    """The platform-public namespace: any signed-in caller reads it."""

    path = "/v1/registry/public"
    tags = ["registry"]

    @get("/apps", operation_id="listPublicApps", **guarded(Action.CATALOG))
    async def list_apps(self, db: Database, limit: Limit = 100, after: After = "") -> AppPage:
        rows = await catalog.list_apps(db, PLATFORM, None, limit, after)
        return AppPage(
            items=[AppOut(**r) for r in rows],
            next_after=rows[-1]["name"] if len(rows) == limit else None,
        )

    @get(APP, operation_id="getPublicApp", **guarded(Action.CATALOG))
    async def get_app(self, app: str, db: Database) -> AppOut:
        return AppOut(**await catalog.get_app(db, _public(app)))

    @get(APP + "/versions", operation_id="listPublicVersions", **guarded(Action.CATALOG))
    async def list_versions(self, app: str, db: Database) -> VersionPage:
        return VersionPage(
            items=[VersionSummary(**r) for r in await catalog.list_versions(db, _public(app))]
        )

    @get(VERSION, operation_id="getPublicVersion", **guarded(Action.CATALOG))
    async def get_version(self, app: str, version: str, db: Database) -> ReleaseChanged:
        return await catalog.get_release(db, _public(app), version)

    @get(
        VERSION + "/manifest",
        operation_id="getPublicManifest",
        **_MANIFEST,
        **guarded(Action.CATALOG),
    )
    async def get_manifest(self, app: str, version: str, db: Database) -> Response[bytes]:
        return await _manifest(db, _public(app), version)

    @get(
        APP + "/blobs/{digest:str}",
        operation_id="getPublicBlob",
        responses={
            200: ResponseSpec(
                bytes,
                description="The blob's bytes",
                media_type="application/octet-stream",
                generate_examples=False,
            )
        },
        **guarded(Action.CATALOG),
    )
    async def get_blob(self, app: str, digest: str, db: Database, state: State) -> Stream:
        return await _blob_stream(db, _oci(state), _public(app), digest)


class WitnessController(Controller):
    """The audit checkpoints registry witnessed (app/witness.py): what a verifier compares
    audit's answers with."""

    path = "/v1/registry/witness"
    tags = ["registry"]

    @get("/checkpoint", operation_id="getWitnessedCheckpoint", **guarded(Action.WITNESS))
    async def checkpoint(self, db: Database, origin: str | None = None) -> WitnessedCheckpoint:
        async with db.unit_of_work() as uow:
            row = await witness.latest(uow, origin)
        if row is None:
            raise NotFound("registry has witnessed no checkpoint of this log yet")
        return WitnessedCheckpoint(
            origin=row["origin"],
            size=row["size"],
            root=base64.b64encode(bytes(row["root"])).decode(),
            note=row["note"],
            witnessed_at=row["witnessed_at"],
        )

    @get("/conflicts", operation_id="listWitnessConflicts", **guarded(Action.WITNESS_CONFLICTS))
    async def conflicts(self, db: Database, limit: Limit = 100) -> WitnessConflictList:
        async with db.unit_of_work() as uow:
            rows = await witness.conflicts(uow, limit)
        return WitnessConflictList(items=[WitnessConflict(**dict(r)) for r in rows])


ROUTES = [TenantController, ProjectController, PublicController, WitnessController]
