"""The node's bundle pull against the real OCI registry devstack runs, with the node's own
credential: a pushed bundle lands in the pull cache as a layout whose every byte verifies;
what is cached is not fetched again; an unknown digest, a wrong credential, another tenant's
repository and an unreachable registry are refusals (BundleError), never a layout. (Bytes
that do not match their digest cannot be served by a real registry; the streaming checks
are the same as verify_layout's, which tests them on tampered layouts.)"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from gpucloud_trust import bundle as bundles
from gpucloud_trust.bundle import BundleError
from node_agent.pull import OciPuller, repository

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def oci():
    from devstack import credentials, fleet, infra
    from devstack import oci as devstack_oci

    with infra.state_lock():
        started = devstack_oci.start(fleet.load())
    pusher = (started.username, started.password)
    node = (devstack_oci.NODE_USERNAME, credentials.password(devstack_oci.NODE_PASSWORD_KEY))
    return started.url, pusher, node


def _push(url: str, auth, repo: str, built: bundles.Bundle) -> None:
    with httpx.Client(base_url=url, auth=auth, timeout=30) as client:
        for blob in built.manifest.blobs:
            started = client.post(f"/v2/{repo}/blobs/uploads/")
            assert started.status_code == 202, started.text
            location = started.headers["location"]
            separator = "&" if "?" in location else "?"
            done = client.put(
                f"{location}{separator}digest={blob.digest}",
                content=built.blob_path(blob.digest).read_bytes(),
                headers={"content-type": "application/octet-stream"},
            )
            assert done.status_code == 201, done.text
        put = client.put(
            f"/v2/{repo}/manifests/{built.digest}",
            content=built.manifest.raw,
            headers={"content-type": bundles.MANIFEST_MEDIA_TYPE},
        )
        assert put.status_code == 201, put.text


def _bundle(tmp_path: Path) -> bundles.Bundle:
    source = tmp_path / f"src-{uuid.uuid4().hex[:6]}"
    source.mkdir()
    (source / "server.py").write_text(f"print({uuid.uuid4().hex!r})\n")
    (source / "weights.bin").write_bytes(uuid.uuid4().bytes * 5000)
    return bundles.build(source, tmp_path / f"layout-{uuid.uuid4().hex[:6]}", config={"a": 1})


def test_a_pushed_bundle_lands_in_the_cache_verified(oci, tmp_path):
    url, pusher, node = oci
    tenant = uuid.uuid4()
    built = _bundle(tmp_path)
    _push(url, pusher, repository(tenant, "pulled"), built)
    puller = OciPuller(url, *node)
    cache = tmp_path / "cache"

    layout = puller.ensure(tenant, "pulled", built.digest, cache)
    assert layout == cache / built.digest.removeprefix("sha256:")
    assert bundles.load_layout(layout).digest == built.digest
    for blob in built.manifest.blobs:
        pulled = bundles.blob_path(layout, blob.digest).read_bytes()
        assert pulled == built.blob_path(blob.digest).read_bytes()
    assert [p.name for p in cache.iterdir()] == [layout.name]  # no staging left behind

    # cached: not fetched again (a puller that cannot reach anything still answers)
    assert OciPuller("http://127.0.0.1:9").ensure(tenant, "pulled", built.digest, cache) == layout


def test_refusals_leave_no_layout(oci, tmp_path):
    url, pusher, node = oci
    tenant = uuid.uuid4()
    built = _bundle(tmp_path)
    _push(url, pusher, repository(tenant, "refused"), built)
    cache = tmp_path / "cache"
    unknown = "sha256:" + "0" * 64
    with pytest.raises(BundleError) as missing:
        OciPuller(url, *node).ensure(tenant, "refused", unknown, cache)
    assert missing.value.reason == "pull-failed"
    with pytest.raises(BundleError) as denied:
        OciPuller(url, node[0], "wrong-password").ensure(tenant, "refused", built.digest, cache)
    assert denied.value.reason == "pull-failed"
    # another tenant's repository does not hold it: the digest alone opens nothing
    with pytest.raises(BundleError):
        OciPuller(url, *node).ensure(uuid.uuid4(), "refused", built.digest, cache)
    with pytest.raises(BundleError):
        OciPuller("http://127.0.0.1:9", *node).ensure(tenant, "refused", built.digest, cache)
    assert not cache.exists() or list(cache.iterdir()) == []
