"""gpucloud app: an app developer's path from a `gpucloud.yaml` to a signed, promoted release
in registry (docs/apps.md "Add a New App").

- `app init NAME` writes a runnable example: gpucloud.yaml and a small HTTP server.
- `app validate` checks gpucloud.yaml against the manifest schema
  (gpucloud_manifest, contracts/app-manifest.schema.json) naming each field.
- `app key create` makes an Ed25519 publisher key (saved 0600 here) and asks registry to
  trust its public half for the tenant (a tenant owner or admin with a recent second factor).
- `app publish` builds the bundle (the manifest's folder as one layer, the manifest itself as
  the config blob, so the signature covers command, ports and probe), creates the app in the
  project when it is new, uploads the blobs through registry, publishes the version and, with
  `--key`, signs and attaches the release statement.
- `app promote NAME VERSION --to CHANNEL` promotes it (dev -> staging -> stable).
"""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from typing import Any

import click

from gpucloud_cli.app import App, json_option, pass_app
from gpucloud_cli.output import emit_json, note
from gpucloud_cli.sdk.errors import ApiError, FieldError, GpucloudError

MANIFEST_FILE = "gpucloud.yaml"
DEFAULT_KEY = Path("~/.config/gpucloud/publisher.key")

EXAMPLE_MANIFEST = """\
# gpucloud app manifest (contracts/app-manifest.schema.json); `gpucloud app validate` checks it.
schema_version: 1
name: {name}
version: 0.1.0
description: A tiny HTTP app; replace server.py with yours.
# argv, run in the bundle's folder; ${{PORT}} is the host port the node agent gives `http`
command: ["python3", "server.py", "--port", "${{PORT}}"]
resources:
  sku: h100-80gb
  mig_profile: 1g.10gb
  count: 1
ports:
  - {{name: http, port: 8000, protocol: http, expose: true}}
probe:
  path: /healthz
  port: http
  interval_s: 1
  timeout_s: 1
  failure_threshold: 3
env:
  GREETING: {{value: hello}}
replicas: 1
"""

EXAMPLE_SERVER = '''\
"""An example app: GET /healthz answers ok, every other path the greeting."""

import argparse
import http.server
import os


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok" if self.path == "/healthz" else os.environ.get("GREETING", "hi").encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=8000)
http.server.ThreadingHTTPServer(("127.0.0.1", parser.parse_args().port), Handler).serve_forever()
'''


class ManifestInvalid(GpucloudError):
    """The manifest breaks the schema: one field error per problem (the validation exit
    code), named by its path in gpucloud.yaml."""

    problem_class = "validation"
    title = "Invalid app manifest"

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "errors": [dataclasses.asdict(e) for e in self.errors]}


def _load_yaml(path: Path) -> Any:
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise click.UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestInvalid(f"{path} is not YAML: {exc}") from None


def load_manifest(path: Path) -> Any:
    """The validated manifest, or ManifestInvalid naming each wrong field."""
    from gpucloud_manifest import ManifestError, validate

    try:
        return validate(_load_yaml(path))
    except ManifestError as exc:
        raise ManifestInvalid(
            f"{path}: " + "; ".join(exc.problems),
            [FieldError(f, m) for f, m in exc.fields()],
        ) from None


def _manifest_path(target: str) -> Path:
    path = Path(target)
    return path / MANIFEST_FILE if path.is_dir() else path


@click.group()
def app() -> None:
    """Publish apps: init, validate, key create, publish, promote."""


@app.command("init")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Default: ./NAME.")
@json_option
def init(name: str, directory: str | None, as_json: bool) -> None:
    """Write an example app (gpucloud.yaml and server.py) to start from."""
    import re

    from gpucloud_manifest import NAME

    if not re.match(NAME, name):
        raise click.BadParameter(
            "lower-case letters, digits and '-' (at most 63)", param_hint="NAME"
        )
    folder = Path(directory or name)
    manifest = folder / MANIFEST_FILE
    if manifest.exists():
        raise click.UsageError(f"{manifest} exists: not overwriting it")
    folder.mkdir(parents=True, exist_ok=True)
    manifest.write_text(EXAMPLE_MANIFEST.format(name=name))
    (folder / "server.py").write_text(EXAMPLE_SERVER)
    if as_json:
        emit_json({"manifest": str(manifest), "files": [str(manifest), str(folder / "server.py")]})
        return
    note(f"wrote {manifest} and {folder / 'server.py'}; next: gpucloud app validate {folder}")


@app.command("validate")
@click.argument("target", default=".", metavar="[DIR|FILE]")
@json_option
def validate_command(target: str, as_json: bool) -> None:
    """Check gpucloud.yaml against the manifest schema, naming each wrong field."""
    path = _manifest_path(target)
    manifest = load_manifest(path)
    if as_json:
        emit_json(
            {
                "manifest": str(path),
                "valid": True,
                "name": manifest.name,
                "version": manifest.version,
                "required_env": manifest.required_env(),
            }
        )
        return
    note(f"{path}: valid ({manifest.name} {manifest.version})")


def _registry_apps(tenant_id: str, project_id: str) -> str:
    return f"/v1/registry/tenants/{tenant_id}/projects/{project_id}/apps"


@app.group("key")
def key() -> None:
    """Publisher keys: the Ed25519 keys whose signatures registry trusts for the tenant."""


@key.command("create")
@click.option("--out", type=click.Path(dir_okay=False), default=str(DEFAULT_KEY), show_default=True)
@click.option("--name", "key_name", default="cli", show_default=True, help="Its name in registry.")
@json_option
@pass_app
def key_create(app: App, out: str, key_name: str, as_json: bool) -> None:
    """Make a publisher key here and have registry trust it (owner/admin, step-up)."""
    from gpucloud_trust.keys import SigningKey

    path = Path(out).expanduser()
    if path.exists():
        raise click.UsageError(f"{path} exists: not overwriting a key")
    scope = app.scope()
    signer = SigningKey.generate()
    trusted = scope.client._json(
        "POST",
        f"/v1/registry/tenants/{scope.tenant_id}/keys",
        json={"public_key": signer.public.to_pem(), "name": key_name},
        idempotency_key=f"cli-key-{signer.keyid}",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(signer.to_pem())
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    if as_json:
        emit_json({"key_file": str(path), "key_id": signer.keyid, "key": trusted})
        return
    note(f"trusted {signer.keyid} as {key_name!r}; private key in {path} (mode 0600)")


def _ensure_app(scope: Any, name: str) -> bool:
    """Create the app in the project; False when it already exists."""
    from gpucloud_cli.sdk.client import new_idempotency_key

    try:
        scope.client._json(
            "POST",
            _registry_apps(scope.tenant_id, scope.project_id),
            json={"name": name},
            idempotency_key=new_idempotency_key(),
        )
    except ApiError as exc:
        if exc.status == 409:  # app-exists
            return False
        raise
    return True


@app.command("publish")
@click.argument("target", default=".", metavar="[DIR|FILE]")
@click.option(
    "--key",
    "key_file",
    type=click.Path(dir_okay=False),
    help=f"Sign the release with this publisher key (e.g. {DEFAULT_KEY}).",
)
@json_option
@pass_app
def publish(app: App, target: str, key_file: str | None, as_json: bool) -> None:
    """Build, upload and publish the app's bundle; sign its release with --key."""
    import base64
    import tempfile

    from gpucloud_manifest import to_builtins
    from gpucloud_trust import bundle as bundles
    from gpucloud_trust import intoto
    from gpucloud_trust.keys import SigningKey

    path = _manifest_path(target)
    manifest = load_manifest(path)
    signer = SigningKey.load(Path(key_file).expanduser()) if key_file else None
    scope = app.scope()
    base = f"{_registry_apps(scope.tenant_id, scope.project_id)}/{manifest.name}"
    with tempfile.TemporaryDirectory(prefix="gpucloud-bundle-") as tmp:
        built = bundles.build(
            path.parent.resolve(), Path(tmp) / "layout", config=to_builtins(manifest)
        )
        created = _ensure_app(scope, manifest.name)
        uploaded = 0
        for blob in built.manifest.blobs:
            answer = scope.client.request(
                "PUT",
                f"{base}/blobs/{blob.digest}",
                content=built.blob_path(blob.digest).read_bytes(),
                retry=True,  # content-addressed: a repeat stores nothing twice
            )
            uploaded += answer.status_code == 201
        release = scope.client._json(
            "POST",
            f"{base}/versions",
            json={
                "version": manifest.version,
                "manifest": base64.b64encode(built.manifest.raw).decode(),
            },
            idempotency_key=f"cli-publish-{manifest.name}-{manifest.version}-{built.digest}",
        )
    signed = False
    if signer is not None:
        envelope = intoto.release_statement(
            built.digest, tenant=scope.tenant_id, app=manifest.name, version=manifest.version
        ).sign([signer])
        release = scope.client._json(
            "POST",
            f"{base}/versions/{manifest.version}/statements",
            json={"envelope": envelope.to_json().decode()},
            idempotency_key=f"cli-sign-{built.digest}-{signer.keyid}",
        )
        signed = True
    if as_json:
        emit_json(
            {
                "app": manifest.name,
                "version": manifest.version,
                "digest": built.digest,
                "app_created": created,
                "blobs_uploaded": uploaded,
                "signed": signed,
                "release": release,
            }
        )
        return
    note(
        f"published {manifest.name} {manifest.version} ({built.digest[:19]}...)"
        + (", signed" if signed else ", unsigned: sign it with --key to promote it")
    )


@app.command("promote")
@click.argument("name")
@click.argument("version")
@click.option("--to", "channel", type=click.Choice(["dev", "staging", "stable"]), required=True)
@json_option
@pass_app
def promote(app: App, name: str, version: str, channel: str, as_json: bool) -> None:
    """Promote a published version to the next channel (dev -> staging -> stable)."""
    scope = app.scope()
    base = f"{_registry_apps(scope.tenant_id, scope.project_id)}/{name}"
    release = scope.client._json(
        "POST",
        f"{base}/versions/{version}/promotions",
        json={"channel": channel},
        idempotency_key=f"cli-promote-{name}-{version}-{channel}",
    )
    if as_json:
        emit_json({"app": name, "version": version, "channel": channel, "release": release})
        return
    note(f"{name} {version} is on {', '.join(release.get('channels') or [channel])}")
