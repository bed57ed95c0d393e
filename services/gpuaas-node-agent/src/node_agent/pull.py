"""The node's bundle pull: a launch's bundle fetched from the OCI registry into the pull cache
(`GPUCLOUD_NODE_BUNDLE_DIR/<hex>/`, an OCI image layout per manifest digest), before
bundles.verify_before_run checks its bytes and signatures.

The node pulls with its own registry credential (GPUCLOUD_NODE_OCI_URL, _USERNAME,
_PASSWORD): read access to the apps' repositories (`t<tenant hex>/<app>`, `platform/<app>`
for public apps, as registry names them). Nothing fetched is trusted: the manifest must hash
to the digest gpuaas asked for, every blob to its descriptor and at most its declared size
(checked while streaming, so a lying registry cannot fill the disk), and the layout is
renamed into place only when complete. verify_layout then checks everything again with the
release's signatures. A failure raises BundleError(`pull-failed`, ...), which the agent
reports like any other bundle refusal (the allocation fails with `bundle_pull_failed`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import httpx

from gpucloud_trust.bundle import (
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    BundleError,
    Descriptor,
    Manifest,
    blob_path,
)

PLATFORM_TENANT = uuid.UUID(int=0)
CHUNK = 1 << 16


def repository(tenant_id: uuid.UUID, app: str) -> str:
    """The OCI repository registry keeps an app in (docs/registry.md)."""
    namespace = "platform" if tenant_id == PLATFORM_TENANT else f"t{tenant_id.hex}"
    return f"{namespace}/{app}"


@dataclasses.dataclass(frozen=True)
class OciPuller:
    url: str
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    timeout_s: float = 30.0

    @classmethod
    def from_env(cls) -> OciPuller | None:
        url = os.environ.get("GPUCLOUD_NODE_OCI_URL")
        if not url:
            return None
        return cls(
            url.rstrip("/"),
            os.environ.get("GPUCLOUD_NODE_OCI_USERNAME") or None,
            os.environ.get("GPUCLOUD_NODE_OCI_PASSWORD") or None,
        )

    def ensure(self, tenant_id: uuid.UUID, app: str, digest: str, cache: Path) -> Path:
        """The layout of `digest` under `cache`, pulled when it is not there yet."""
        layout = cache / digest.removeprefix("sha256:")
        if (layout / "index.json").exists():
            return layout
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".pull-", dir=cache))
        try:
            self._pull(repository(tenant_id, app), digest, staging)
            try:
                staging.rename(layout)
            except OSError:
                if not (layout / "index.json").exists():  # not a concurrent pull's result
                    raise
        except httpx.HTTPError as exc:
            raise BundleError("pull-failed", f"the OCI registry: {exc}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return layout

    def _client(self) -> httpx.Client:
        auth = (self.username, self.password) if self.username else None
        return httpx.Client(base_url=self.url, auth=auth, timeout=self.timeout_s)

    def _pull(self, repo: str, digest: str, layout: Path) -> None:
        with self._client() as client:
            answer = client.get(
                f"/v2/{repo}/manifests/{digest}", headers={"Accept": MANIFEST_MEDIA_TYPE}
            )
            if answer.status_code != 200:
                raise BundleError("pull-failed", f"manifest {digest}: HTTP {answer.status_code}")
            raw = answer.content
            if "sha256:" + hashlib.sha256(raw).hexdigest() != digest:
                raise BundleError("manifest-digest", "the registry's manifest is not the digest")
            manifest = Manifest.parse(raw)
            _write(blob_path(layout, digest), raw)
            for blob in manifest.blobs:
                self._blob(client, repo, blob, layout)
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        index = {
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [Descriptor(MANIFEST_MEDIA_TYPE, digest, len(raw)).to_dict()],
        }
        (layout / "index.json").write_text(json.dumps(index, sort_keys=True))

    def _blob(self, client: httpx.Client, repo: str, blob: Descriptor, layout: Path) -> None:
        target = blob_path(layout, blob.digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        hashed, size = hashlib.sha256(), 0
        with client.stream("GET", f"/v2/{repo}/blobs/{blob.digest}") as answer:
            if answer.status_code != 200:
                raise BundleError("pull-failed", f"blob {blob.digest}: HTTP {answer.status_code}")
            with target.open("wb") as out:
                for chunk in answer.iter_bytes(CHUNK):
                    size += len(chunk)
                    if size > blob.size:
                        raise BundleError("blob-size", f"blob {blob.digest} exceeds {blob.size}")
                    hashed.update(chunk)
                    out.write(chunk)
        if size != blob.size or "sha256:" + hashed.hexdigest() != blob.digest:
            raise BundleError("blob-digest", f"blob {blob.digest} does not match its descriptor")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
