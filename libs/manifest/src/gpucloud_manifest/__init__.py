"""The app manifest (`gpucloud.yaml`): what an app runs, on what, and how it is probed.

Shared by the CLI (`gpucloud app validate|publish`), registry's events (a published release
carries its bundle's config blob, which is this manifest as JSON) and appplatform (its
catalog and instances). Hand written; contracts/app-manifest.schema.json is generated from
these structs (`python tools/contracts/app_manifest_schema.py`, checked for drift by
libs/manifest/tests/test_manifest.py).

`validate(data)` checks a parsed document and raises `ManifestError` listing every problem
with its exact field path (`ports[1].port: must be <= 65535`, `probe.port: names no declared
port`). Volumes are declared only: their storage is local to the node a replica runs on (it
does not follow a replica to another node and is lost with the node).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "SCHEMA_VERSION",
    "EnvVar",
    "GpuMemoryRange",
    "Manifest",
    "ManifestError",
    "Port",
    "Probe",
    "Resources",
    "Volume",
    "json_schema",
    "validate",
]

SCHEMA_VERSION = 1
NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
PORT_NAME = r"^[a-z][a-z0-9-]{0,14}$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
DIGEST = r"^sha256:[0-9a-f]{64}$"
# SemVer 2.0 (what registry accepts for a version).
SEMVER = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
# Set by the node agent for every workload; a manifest may not declare them.
RESERVED_ENV = re.compile(r"^(PORT|PORT_[A-Z0-9_]+|GPUCLOUD_[A-Z0-9_]*)$")


class _Base(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    pass


class EnvVar(_Base):
    """One environment variable: a default value, or one the launcher must give."""

    value: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    required_at_launch: bool = False
    description: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class Port(_Base):
    """A port the app listens on; the node agent maps it to a free host port and sets
    PORT_<NAME> (and PORT for the first). `expose` http ports get a connect URL."""

    name: Annotated[str, msgspec.Meta(pattern=PORT_NAME)]
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    protocol: Literal["http", "tcp"] = "http"
    expose: bool = False


class GpuMemoryRange(_Base):
    """GPU memory per GPU, in GB (max absent: no upper bound)."""

    min: Annotated[int, msgspec.Meta(ge=1, le=4096)]
    max: Annotated[int, msgspec.Meta(ge=1, le=4096)] | None = None


class Resources(_Base):
    """What one replica runs on: a SKU, or any GPU whose memory is in a range; a MIG profile
    for a slice of a GPU; how many."""

    sku: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    gpu_memory_gb: GpuMemoryRange | None = None
    mig_profile: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] | None = None
    count: Annotated[int, msgspec.Meta(ge=1, le=8)] = 1


class Probe(_Base):
    """HTTP readiness probe: GET http://<replica><path> on a declared http port (its number
    or name). No traffic reaches a replica before it passes."""

    path: Annotated[str, msgspec.Meta(pattern="^/", max_length=1024)]
    port: (
        Annotated[int, msgspec.Meta(ge=1, le=65535)]
        | Annotated[str, msgspec.Meta(pattern=PORT_NAME)]
    )
    headers: dict[str, Annotated[str, msgspec.Meta(max_length=1024)]] = {}
    interval_s: Annotated[float, msgspec.Meta(ge=0.1, le=300)] = 5.0
    timeout_s: Annotated[float, msgspec.Meta(ge=0.1, le=60)] = 2.0
    initial_delay_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 0.0
    failure_threshold: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3


class Volume(_Base):
    """A declared volume. Its storage is local to the node the replica runs on: it is not
    replicated and does not follow a replica to another node."""

    name: Annotated[str, msgspec.Meta(pattern=PORT_NAME)]
    mount_path: Annotated[str, msgspec.Meta(pattern="^/", max_length=1024)]
    size_gb: Annotated[int, msgspec.Meta(ge=1, le=10000)]


class Manifest(_Base):
    """gpucloud.yaml, schema version 1."""

    schema_version: Literal[1]
    name: Annotated[str, msgspec.Meta(pattern=NAME)]
    version: Annotated[str, msgspec.Meta(min_length=5, max_length=128, pattern=SEMVER)]
    command: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]],
        msgspec.Meta(min_length=1, max_length=64),
    ]
    resources: Resources
    # The bundle's digest in a template; absent in a published release (it is that bundle).
    bundle: Annotated[str, msgspec.Meta(pattern=DIGEST)] | None = None
    description: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    env: dict[Annotated[str, msgspec.Meta(pattern=ENV_NAME)], EnvVar] = {}
    ports: Annotated[list[Port], msgspec.Meta(max_length=8)] = []
    probe: Probe | None = None
    replicas: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1
    idle_stop_after_s: Annotated[int, msgspec.Meta(ge=60, le=604800)] | None = None
    volumes: Annotated[list[Volume], msgspec.Meta(max_length=8)] = []

    def port_named(self, ref: int | str) -> Port | None:
        """The declared port a probe (or a connect URL) means: by number or by name."""
        for port in self.ports:
            if port.port == ref or port.name == ref:
                return port
        return None

    def required_env(self) -> list[str]:
        return sorted(name for name, var in self.env.items() if var.required_at_launch)


class ManifestError(ValueError):
    """The manifest is invalid; `problems` are `path: message` strings, in document order."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid app manifest: " + "; ".join(problems))

    def fields(self) -> list[tuple[str, str]]:
        return [tuple(p.split(": ", 1)) for p in self.problems]  # type: ignore[misc]


# --- validation ---------------------------------------------------------------------------

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_BOUND = re.compile(r"^Expected `(?:int|float|number)` (?P<op>[<>]=?) (?P<n>\S+)$")
_LENGTH = re.compile(r"^Expected `(?P<t>str|array|object)` of length (?P<op>[<>]=?) (?P<n>\d+)$")
_TYPE = re.compile(r"^Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<f>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<f>[^`]+)`$")
_REGEX = re.compile(r"^Expected `str` matching regex '(?P<re>.*)'$", re.S)
_ENUM = re.compile(r"^Invalid enum value (?P<v>.*)$")
_UNITS = {"str": "characters", "array": "items", "object": "entries"}
_OPS = {"<=": "at most", ">=": "at least", "<": "fewer than", ">": "more than"}
_WANT = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "array": "a list",
    "object": "a mapping",
}


def _join(prefix: str, rest: str) -> str:
    if not rest:
        return prefix
    if rest.startswith("["):
        return prefix + rest
    rest = rest.removeprefix(".")
    return f"{prefix}.{rest}" if prefix else rest


def _phrase(message: str, path: str) -> tuple[str, str]:
    """msgspec's complaint as `path`, `message` in the manifest's own words."""
    if m := _MISSING.match(message):
        return _join(path, "." + m["f"]), "is required"
    if m := _UNKNOWN.match(message):
        return _join(path, "." + m["f"]), "is not a manifest field"
    if m := _BOUND.match(message):
        return path, f"must be {m['op']} {m['n']}"
    if m := _LENGTH.match(message):
        return path, f"must have {_OPS[m['op']]} {m['n']} {_UNITS[m['t']]}"
    if m := _REGEX.match(message):
        return path, f"must match {m['re']}"
    if m := _ENUM.match(message):
        return path, f"{m['v']} is not one of the allowed values"
    if m := _TYPE.match(message):
        wants = " or ".join(_WANT.get(w.strip(), w.strip()) for w in m["want"].split("|"))
        return path, f"must be {wants}, not {_WANT.get(m['got'], m['got'])}"
    return path, message


def _problem(error: msgspec.ValidationError, prefix: str) -> str:
    m = _AT.match(str(error))
    assert m is not None
    path, message = _phrase(m["msg"], _join(prefix, m["path"] or ""))
    return f"{path or '(manifest)'}: {message}"


def _struct_type(annotation: Any) -> type[msgspec.Struct] | None:
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return annotation
    return None


def _check(value: Any, annotation: Any, path: str, problems: list[str]) -> None:
    """Every problem of `value` against `annotation`: a struct field by field and a list of
    structs item by item, so one document reports all its mistakes, not only the first."""
    try:
        msgspec.convert(value, annotation, strict=True)
        return
    except msgspec.ValidationError as error:
        first = error
    struct = _struct_type(annotation)
    if struct is not None and isinstance(value, dict):
        fields = msgspec.structs.fields(struct)
        known = {f.encode_name for f in fields}
        for key in value:
            if key not in known:
                problems.append(f"{_join(path, '.' + str(key))}: is not a manifest field")
        for f in fields:
            where = _join(path, "." + f.encode_name)
            if f.encode_name not in value:
                if f.required:
                    problems.append(f"{where}: is required")
                continue
            _check(value[f.encode_name], f.type, where, problems)
        return
    item = _list_item_struct(annotation)
    if item is not None and isinstance(value, list):
        meta = getattr(annotation, "__metadata__", ())
        try:
            msgspec.convert(value, Annotated[list[Any], *meta] if meta else list[Any])
        except msgspec.ValidationError as error:
            problems.append(_problem(error, path))
        for index, element in enumerate(value):
            _check(element, item, f"{path}[{index}]", problems)
        return
    inner = annotation.__origin__ if hasattr(annotation, "__metadata__") else annotation
    if getattr(inner, "__origin__", None) is dict and isinstance(value, dict):
        key_type, value_type = inner.__args__
        for key, element in value.items():
            where = _join(path, f".{key}")
            try:
                msgspec.convert(key, key_type, strict=True)
            except msgspec.ValidationError as error:
                problems.append(f"{where}: the name {_problem(error, '').split(': ', 1)[1]}")
                continue
            _check(element, value_type, where, problems)
        return
    problems.append(_problem(first, path))


def _list_item_struct(annotation: Any) -> type[msgspec.Struct] | None:
    inner = annotation.__origin__ if hasattr(annotation, "__metadata__") else annotation
    if getattr(inner, "__origin__", None) is list:
        return _struct_type(inner.__args__[0])
    return None


def _semantics(manifest: Manifest) -> list[str]:
    """What the types alone cannot say: references between fields, uniqueness, ranges."""
    problems: list[str] = []
    names: set[str] = set()
    numbers: set[int] = set()
    for i, port in enumerate(manifest.ports):
        if port.name in names:
            problems.append(f"ports[{i}].name: {port.name!r} is declared twice")
        if port.port in numbers:
            problems.append(f"ports[{i}].port: {port.port} is declared twice")
        names.add(port.name)
        numbers.add(port.port)
        if port.expose and port.protocol != "http":
            problems.append(f"ports[{i}].expose: only http ports can be exposed")
    if manifest.probe is not None:
        target = manifest.port_named(manifest.probe.port)
        if target is None:
            problems.append("probe.port: names no declared port")
        elif target.protocol != "http":
            problems.append("probe.port: names a tcp port (the probe is HTTP)")
        if manifest.probe.timeout_s > manifest.probe.interval_s:
            problems.append("probe.timeout_s: must not exceed probe.interval_s")
    for name, var in manifest.env.items():
        if RESERVED_ENV.match(name):
            problems.append(f"env.{name}: is set by the platform (PORT, PORT_*, GPUCLOUD_*)")
        if var.required_at_launch and var.value is not None:
            problems.append(f"env.{name}.value: a variable required at launch has no default")
    resources = manifest.resources
    if resources.sku is None and resources.gpu_memory_gb is None:
        problems.append("resources: needs a sku or a gpu_memory_gb range")
    if resources.sku is not None and resources.gpu_memory_gb is not None:
        problems.append("resources.gpu_memory_gb: give a sku or a memory range, not both")
    memory = resources.gpu_memory_gb
    if memory is not None and memory.max is not None and memory.max < memory.min:
        problems.append("resources.gpu_memory_gb.max: must be >= resources.gpu_memory_gb.min")
    if resources.mig_profile is not None and resources.count != 1:
        problems.append("resources.count: a MIG profile runs on one slice (count 1)")
    volume_names: set[str] = set()
    mounts: set[str] = set()
    for i, volume in enumerate(manifest.volumes):
        if volume.name in volume_names:
            problems.append(f"volumes[{i}].name: {volume.name!r} is declared twice")
        if volume.mount_path in mounts:
            problems.append(f"volumes[{i}].mount_path: {volume.mount_path} is mounted twice")
        volume_names.add(volume.name)
        mounts.add(volume.mount_path)
    return problems


def validate(data: Any) -> Manifest:
    """The manifest in `data` (a parsed YAML or JSON document), or `ManifestError` naming
    every field that is wrong."""
    if not isinstance(data, dict):
        raise ManifestError(["(manifest): must be a mapping"])
    problems: list[str] = []
    _check(data, Manifest, "", problems)
    if problems:
        raise ManifestError(problems)
    manifest = msgspec.convert(data, Manifest, strict=True)
    problems = _semantics(manifest)
    if problems:
        raise ManifestError(problems)
    return manifest


def to_builtins(manifest: Manifest) -> dict[str, Any]:
    """The manifest as JSON-ready data (what a bundle's config blob holds)."""
    return msgspec.to_builtins(manifest)


def json_schema() -> dict[str, Any]:
    """The published JSON Schema (contracts/app-manifest.schema.json)."""
    schema = msgspec.json.schema(Manifest)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://gpucloud.dev/schemas/app-manifest.schema.json",
        "title": "gpucloud app manifest (gpucloud.yaml)",
        "description": (
            "What an app runs (command, env, ports), on what (resources) and how it is probed."
            " Generated from libs/manifest/src/gpucloud_manifest/__init__.py; semantic"
            " rules (a probe names a declared http port, unique port names and numbers, a sku"
            " or a memory range) are checked by its validate(). Volumes are local to the node."
        ),
        **schema,
    }
