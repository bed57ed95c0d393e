"""The app manifest: valid documents decode, each mistake is named by its field path, and the
published JSON Schema is the structs' own."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

from gpucloud_manifest import Manifest, ManifestError, json_schema, validate

ROOT = Path(__file__).resolve().parents[3]

GOOD = {
    "schema_version": 1,
    "name": "notebook",
    "version": "1.2.0",
    "command": ["jupyter", "server", "--port", "${PORT_HTTP}"],
    "env": {
        "JUPYTER_TOKEN": {"required_at_launch": True, "description": "the server's token"},
        "LOG_LEVEL": {"value": "info"},
    },
    "ports": [
        {"name": "http", "port": 8888, "protocol": "http", "expose": True},
        {"name": "metrics", "port": 9100, "protocol": "tcp"},
    ],
    "resources": {"gpu_memory_gb": {"min": 16, "max": 80}, "count": 1},
    "probe": {"path": "/api/status", "port": "http", "headers": {"X-Probe": "1"}},
    "replicas": 2,
    "idle_stop_after_s": 3600,
    "volumes": [{"name": "work", "mount_path": "/work", "size_gb": 10}],
}


def changed(**fields) -> dict:
    data = copy.deepcopy(GOOD)
    data.update(fields)
    return data


def problems(data) -> list[str]:
    with pytest.raises(ManifestError) as raised:
        validate(data)
    return raised.value.problems


def test_a_full_manifest_validates_with_its_defaults() -> None:
    manifest = validate(GOOD)
    assert isinstance(manifest, Manifest)
    assert manifest.required_env() == ["JUPYTER_TOKEN"]
    assert manifest.port_named("http").port == 8888
    assert manifest.probe.interval_s == 5.0 and manifest.probe.failure_threshold == 3
    assert manifest.bundle is None


def test_a_minimal_manifest_validates() -> None:
    manifest = validate(
        {
            "schema_version": 1,
            "name": "batch",
            "version": "0.1.0",
            "command": ["python", "-m", "job"],
            "resources": {"sku": "h100-80gb"},
        }
    )
    assert manifest.replicas == 1 and manifest.ports == [] and manifest.probe is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            changed(ports=[GOOD["ports"][0], {"name": "x", "port": 70000}]),
            "ports[1].port: must be <= 65535",
        ),
        (changed(probe={"path": "/", "port": 9999}), "probe.port: names no declared port"),
        (
            changed(probe={"path": "/", "port": "metrics"}),
            "probe.port: names a tcp port (the probe is HTTP)",
        ),
        (changed(probe={"path": "health", "port": 8888}), "probe.path: must match ^/"),
        (changed(schema_version=2), "schema_version: 2 is not one of the allowed values"),
        (changed(version="1.0"), "version: must have at least 5 characters"),
        (changed(version="latest-x"), "version: must match"),
        (changed(name="Not_A_Name"), "name: must match ^[a-z0-9][a-z0-9-]{0,62}$"),
        (changed(command=[]), "command: must have at least 1 items"),
        (changed(command="jupyter"), "command: must be a list, not a string"),
        (changed(replicas=0), "replicas: must be >= 1"),
        (changed(replicas=17), "replicas: must be <= 16"),
        (changed(idle_stop_after_s=5), "idle_stop_after_s: must be >= 60"),
        (changed(bundle="latest"), "bundle: must match ^sha256:[0-9a-f]{64}$"),
        (
            changed(ports=[{"name": "http", "port": 8888, "protocol": "udp"}]),
            "ports[0].protocol: 'udp' is not one of the allowed values",
        ),
        (
            changed(
                ports=[{"name": "t", "port": 1, "protocol": "tcp", "expose": True}], probe=None
            ),
            "ports[0].expose: only http ports can be exposed",
        ),
        (
            changed(ports=[GOOD["ports"][0], {"name": "http", "port": 8889}]),
            "ports[1].name: 'http' is declared twice",
        ),
        (
            changed(ports=[GOOD["ports"][0], {"name": "b", "port": 8888}]),
            "ports[1].port: 8888 is declared twice",
        ),
        (changed(ports=[{"port": 80}], probe=None), "ports[0].name: is required"),
        (changed(env={"bad-name": {}}), "env.bad-name: the name must match"),
        (changed(env={"PORT_HTTP": {"value": "1"}}), "env.PORT_HTTP: is set by the platform"),
        (changed(env={"GPUCLOUD_X": {}}), "env.GPUCLOUD_X: is set by the platform"),
        (changed(env={"A": {"value": 3}}), "env.A.value: must be a string or null, not an integer"),
        (
            changed(env={"A": {"required_at_launch": True, "value": "x"}}),
            "env.A.value: a variable required at launch has no default",
        ),
        (changed(resources={}), "resources: needs a sku or a gpu_memory_gb range"),
        (
            changed(resources={"sku": "a", "gpu_memory_gb": {"min": 8}}),
            "resources.gpu_memory_gb: give a sku or a memory range, not both",
        ),
        (
            changed(resources={"gpu_memory_gb": {"min": 40, "max": 20}}),
            "resources.gpu_memory_gb.max: must be >= resources.gpu_memory_gb.min",
        ),
        (changed(resources={"sku": "a", "count": 9}), "resources.count: must be <= 8"),
        (
            changed(resources={"sku": "a", "mig_profile": "1g.10gb", "count": 2}),
            "resources.count: a MIG profile runs on one slice (count 1)",
        ),
        (
            changed(probe={"path": "/", "port": 8888, "timeout_s": 10, "interval_s": 1}),
            "probe.timeout_s: must not exceed probe.interval_s",
        ),
        (
            changed(probe={"path": "/", "port": 8888, "failure_threshold": 0}),
            "probe.failure_threshold: must be >= 1",
        ),
        (
            changed(volumes=[{"name": "w", "mount_path": "work", "size_gb": 1}]),
            "volumes[0].mount_path: must match ^/",
        ),
        (
            changed(
                volumes=[
                    {"name": "w", "mount_path": "/a", "size_gb": 1},
                    {"name": "v", "mount_path": "/a", "size_gb": 1},
                ]
            ),
            "volumes[1].mount_path: /a is mounted twice",
        ),
        (changed(surprise=True), "surprise: is not a manifest field"),
        ({k: v for k, v in GOOD.items() if k != "resources"}, "resources: is required"),
        ([], "(manifest): must be a mapping"),
    ],
)
def test_each_mistake_names_its_field(data, expected: str) -> None:
    found = problems(data)
    assert any(p.startswith(expected) for p in found), found


def test_every_structural_mistake_is_listed_not_only_the_first() -> None:
    found = problems(
        changed(
            replicas=0,
            ports=[{"name": "http", "port": 8888}, {"name": "x", "port": 0, "extra": 1}],
            resources={"count": "two"},
        )
    )
    assert found == [
        "resources.count: must be an integer, not a string",
        "ports[1].extra: is not a manifest field",
        "ports[1].port: must be >= 1",
        "replicas: must be >= 1",
    ]


def test_the_error_lists_its_fields() -> None:
    with pytest.raises(ManifestError) as raised:
        validate(changed(replicas=0))
    assert raised.value.fields() == [("replicas", "must be >= 1")]
    assert "replicas: must be >= 1" in str(raised.value)


def test_the_published_schema_is_the_structs_own() -> None:
    spec = importlib.util.spec_from_file_location(
        "app_manifest_schema", ROOT / "tools" / "contracts" / "app_manifest_schema.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (ROOT / "contracts" / "app-manifest.schema.json").read_text()
    assert committed == module.render(), "run tools/contracts/app_manifest_schema.py"
    schema = json.loads(committed)
    assert schema == json.loads(json.dumps(json_schema()))
    manifest = schema["$defs"]["Manifest"]
    assert set(manifest["required"]) == {
        "schema_version",
        "name",
        "version",
        "command",
        "resources",
    }
    assert schema["$defs"]["Port"]["properties"]["port"]["maximum"] == 65535
