"""A client of the OCI distribution API (the CNCF distribution registry, or any registry
speaking https://github.com/opencontainers/distribution-spec): where the bundle bytes live.

Uploads stream: the body registry receives is hashed chunk by chunk while it is sent on to
the OCI registry as one PATCH of an upload session; only if the bytes hash to the claimed
digest (and stay within the size limit) is the session committed (PUT ?digest=, which the OCI
registry checks again). Otherwise the session is cancelled (DELETE) and nothing is stored.

Why not oras-py (the `oras` package on PyPI, 0.2.43): it is synchronous (requests) where
registry is async; it uploads from files on disk, reading a whole blob into memory for a
monolithic upload; and it pushes manifests with `json=` (re-serialised), which changes the
bytes and so the digest the publisher signed. This client sends the manifest bytes exactly.
Authentication: HTTP basic (an external registry's robot account, devstack's htpasswd).
Registries that answer with a Bearer token challenge are not supported yet.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from gpucloud_trust.digests import Digester

log = logging.getLogger(__name__)


class OciError(RuntimeError):
    """The OCI registry refused or could not be reached."""


class DigestMismatch(Exception):
    def __init__(self, claimed: str, actual: str, size: int) -> None:
        super().__init__(f"the bytes hash to {actual} ({size} bytes), not {claimed}")
        self.claimed, self.actual, self.size = claimed, actual, size


class TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"a blob is at most {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class Uploaded:
    digest: str
    size: int


class OciClient:
    def __init__(
        self,
        base_url: str,
        username: str | None = None,
        password: str | None = None,
        *,
        timeout: float = 60.0,
    ) -> None:
        auth = httpx.BasicAuth(username, password or "") if username else None
        self.base_url = base_url.rstrip("/")
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=5.0),
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def ping(self) -> bool:
        try:
            return (await self.http.get("/v2/")).status_code == 200
        except httpx.HTTPError:
            return False

    def _url(self, location: str) -> httpx.URL:
        # Location may be absolute or relative to the registry.
        return httpx.URL(self.base_url).join(location)

    async def blob_size(self, repository: str, digest: str) -> int | None:
        """The blob's size if the repository has it, else None."""
        response = await self._request("HEAD", f"/v2/{repository}/blobs/{digest}")
        if response.status_code == 404:
            return None
        _check(response, "HEAD blob")
        return int(response.headers.get("content-length", "-1"))

    async def upload_blob(
        self, repository: str, digest: str, chunks: AsyncIterator[bytes], max_size: int
    ) -> Uploaded:
        """Stream `chunks` into the repository as blob `digest`, verifying while it streams."""
        started = await self._request("POST", f"/v2/{repository}/blobs/uploads/")
        _check(started, "start upload", expected=(202,))
        location = self._url(started.headers["location"])
        digester = Digester()

        async def hashed() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                if digester.size + len(chunk) > max_size:
                    raise TooLarge(max_size)
                digester.update(chunk)
                yield chunk

        try:
            sent = await self._request(
                "PATCH",
                location,
                content=hashed(),
                headers={"content-type": "application/octet-stream"},
            )
            _check(sent, "upload chunk", expected=(202,))
            location = self._url(sent.headers["location"])
            if digester.digest != digest:
                raise DigestMismatch(digest, digester.digest, digester.size)
            done = await self._request(
                "PUT", location.copy_merge_params({"digest": digest}), content=b""
            )
            _check(done, "commit upload", expected=(201,))
        except BaseException:
            await self._cancel(location)
            raise
        return Uploaded(digest, digester.size)

    async def _cancel(self, location: httpx.URL) -> None:
        try:
            await self.http.delete(location)
        except httpx.HTTPError as exc:  # the registry purges stale sessions itself
            log.warning("cancelling an upload failed", extra={"fields": {"error": repr(exc)}})

    async def open_blob(self, repository: str, digest: str) -> httpx.Response:
        """A streaming GET of the blob (close it when done); 404 raises LookupError."""
        request = self.http.build_request("GET", f"/v2/{repository}/blobs/{digest}")
        try:
            response = await self.http.send(request, stream=True, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise OciError(f"the OCI registry is unreachable: {exc}") from exc
        if response.status_code == 404:
            await response.aclose()
            raise LookupError(digest)
        if response.status_code != 200:
            await response.aclose()
            raise OciError(f"GET blob: HTTP {response.status_code}")
        return response

    async def put_manifest(self, repository: str, digest: str, raw: bytes, media_type: str) -> None:
        """Push the manifest bytes exactly as given, under their digest."""
        response = await self._request(
            "PUT",
            f"/v2/{repository}/manifests/{digest}",
            content=raw,
            headers={"content-type": media_type},
        )
        _check(response, "PUT manifest", expected=(201,))
        if response.headers.get("docker-content-digest", digest) != digest:
            raise OciError("the OCI registry stored the manifest under another digest")

    async def get_manifest(self, repository: str, digest: str, media_type: str) -> bytes | None:
        response = await self._request(
            "GET", f"/v2/{repository}/manifests/{digest}", headers={"accept": media_type}
        )
        if response.status_code == 404:
            return None
        _check(response, "GET manifest")
        return response.content

    async def _request(self, method: str, url: str | httpx.URL, **kwargs) -> httpx.Response:
        try:
            return await self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise OciError(f"the OCI registry is unreachable: {exc!r}") from exc


def _check(response: httpx.Response, what: str, expected: tuple[int, ...] = (200,)) -> None:
    if response.status_code not in expected:
        raise OciError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
