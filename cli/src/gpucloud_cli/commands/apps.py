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
- `app launch APP --name NAME` runs an instance of a promoted release in the project
  (appplatform keeps it running), `--wait` follows it to ready; `app ps`, `app get`,
  `app stop` read and stop instances; `app open` prints (or opens) an exposed port's URL
  through the gateway, where the caller's own token authorizes every request.
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
from gpucloud_cli.sdk.errors import FieldError, GpucloudError

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
    """Apps: init, validate, publish, promote; launch, ps, get, open, stop."""


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
    trusted = scope.client.trust_publisher_key(scope.tenant_id, signer.public.to_pem(), key_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(signer.to_pem())
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    if as_json:
        emit_json({"key_file": str(path), "key_id": signer.keyid, "key": trusted})
        return
    note(f"trusted {signer.keyid} as {key_name!r}; private key in {path} (mode 0600)")


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
    from gpucloud_cli.commands.bundle import build_in_temp, push_layout, sign_release

    scope = app.scope()
    release, manifest, layout, tmp = build_in_temp(target)
    with tmp:
        if key_file:  # signed before anything is sent: a bad key file uploads nothing
            release.envelopes.append(sign_release(release, scope.tenant_id, Path(key_file)))
        result = push_layout(scope, release, layout, manifest)
    signed = bool(release.envelopes)
    if as_json:
        emit_json(
            {
                "app": release.app,
                "version": release.version,
                "digest": release.digest,
                "app_created": result["app_created"],
                "blobs_uploaded": result["blobs_uploaded"],
                "signed": signed,
                "release": result["release"],
            }
        )
        return
    note(
        f"published {release.app} {release.version} ({release.digest[:19]}...)"
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
    release = scope.client.promote(scope.tenant_id, scope.project_id, name, version, channel)
    if as_json:
        emit_json({"app": name, "version": version, "channel": channel, "release": release})
        return
    note(f"{name} {version} is on {', '.join(release.get('channels') or [channel])}")


def _instance_id(scope: Any, wanted: str) -> str:
    """An instance by id or by name (live instances' names are unique in a project)."""
    items = scope.client.list_instances(scope.tenant_id, scope.project_id)
    for item in items:
        if wanted == item["id"] or (
            wanted == item["name"] and item["status"]["state"] not in ("stopped", "failed")
        ):
            return item["id"]
    from gpucloud_cli.sdk.errors import UnknownName

    names = ", ".join(sorted({i["name"] for i in items})) or "none yet"
    raise UnknownName(f"no instance {wanted!r} in this project; instances: {names}")


def _env_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    from gpucloud_cli.sdk.errors import InvalidInput

    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidInput("env", f"{pair!r} is not NAME=VALUE")
        env[name] = value
    return env


def _summary(instance: dict[str, Any]) -> str:
    status = instance["status"]
    return (
        f"{instance['name']} ({instance['id']}): {status['state']},"
        f" {status['ready_replicas']}/{instance['spec']['replicas']} ready"
    )


@app.command("launch")
@click.argument("app_name", metavar="APP")
@click.option("--name", "instance_name", help="The instance's name (default: APP).")
@click.option("--channel", type=click.Choice(["dev", "staging", "stable"]), help="Default: stable.")
@click.option("--version", help="One version instead of a channel's newest.")
@click.option("--public", is_flag=True, help="A platform-public app, not the tenant's own.")
@click.option("--replicas", type=click.IntRange(1, 16))
@click.option("--env", "env", multiple=True, metavar="NAME=VALUE", help="Repeatable.")
@click.option("--wait/--no-wait", default=False, help="Follow the instance until it is ready.")
@click.option("--timeout", "timeout_s", type=float, default=600.0, show_default=True)
@json_option
@pass_app
def launch(
    app: App,
    app_name: str,
    instance_name: str | None,
    channel: str | None,
    version: str | None,
    public: bool,
    replicas: int | None,
    env: tuple[str, ...],
    wait: bool,
    timeout_s: float,
    as_json: bool,
) -> None:
    """Launch an instance of a promoted app in the project."""
    import time

    from gpucloud_cli.sdk.errors import Unfinished

    scope = app.scope()
    body: dict[str, Any] = {"name": instance_name or app_name, "env": _env_pairs(env)}
    for field, value in (("channel", channel), ("version", version), ("replicas", replicas)):
        if value is not None:
            body[field] = value
    if public:
        body["namespace"] = "platform"
    instance = scope.client.launch_instance(scope.tenant_id, scope.project_id, app_name, body)
    deadline = time.monotonic() + timeout_s
    while wait and instance["status"]["state"] not in ("ready", "failed", "stopped"):
        if time.monotonic() > deadline:
            raise Unfinished(f"{_summary(instance)} after {timeout_s:.0f} s")
        time.sleep(1.0)
        instance = scope.client.get_instance(scope.tenant_id, scope.project_id, instance["id"])
    if as_json:
        emit_json({"instance": instance, "waited": wait})
        return
    note(_summary(instance))


@app.command("ps")
@click.option("-a", "--all", "show_all", is_flag=True, help="Stopped and failed ones too.")
@json_option
@pass_app
def ps(app: App, show_all: bool, as_json: bool) -> None:
    """List the project's app instances."""
    from gpucloud_cli.output import table

    scope = app.scope()
    items = scope.client.list_instances(scope.tenant_id, scope.project_id)
    if not show_all:
        items = [i for i in items if i["status"]["state"] not in ("stopped", "failed")]
    if as_json:
        emit_json({"instances": items})
        return
    table(
        ["ID", "NAME", "APP", "VERSION", "STATE", "READY"],
        [
            [
                i["id"][-8:],
                i["name"],
                i["spec"]["app"],
                i["spec"]["version"],
                i["status"]["state"],
                f"{i['status']['ready_replicas']}/{i['spec']['replicas']}",
            ]
            for i in items
        ],
        empty="no app instances in this project",
    )


@app.command("get")
@click.argument("instance")
@json_option
@pass_app
def get(app: App, instance: str, as_json: bool) -> None:
    """Show one instance: its desired state, status and conditions."""
    scope = app.scope()
    found = scope.client.get_instance(
        scope.tenant_id, scope.project_id, _instance_id(scope, instance)
    )
    if as_json:
        emit_json({"instance": found})
        return
    note(_summary(found))
    for c in found["status"]["conditions"]:
        note(f"  {c['type']}={c['status']} ({c['reason']}): {c['message']}")


@app.command("stop")
@click.argument("instance")
@json_option
@pass_app
def stop(app: App, instance: str, as_json: bool) -> None:
    """Stop an instance: its replicas are released."""
    scope = app.scope()
    found = scope.client.stop_instance(
        scope.tenant_id, scope.project_id, _instance_id(scope, instance)
    )
    if as_json:
        emit_json({"instance": found})
        return
    note(_summary(found))


def _first_exposed_port(scope: Any, instance: dict[str, Any]) -> str:
    """The first exposed http port of the instance's release, from the catalog."""
    from gpucloud_cli.sdk.errors import InvalidInput

    spec = instance["spec"]
    for item in scope.client.app_catalog(spec["app"]):
        if item["app"] != spec["app"] or item["tenant_id"] != spec["app_tenant_id"]:
            continue
        for channel in item["channels"]:
            for version in channel["versions"]:
                if version["manifest_digest"] == spec["manifest_digest"]:
                    for p in version["manifest"]["ports"]:
                        if p.get("expose") and p.get("protocol", "http") == "http":
                            return str(p["port"])
    raise InvalidInput("port", "the release exposes no http port the catalog shows: give --port")


@app.command("open")
@click.argument("instance")
@click.option("--port", help="A declared exposed port (number or name); default: the first.")
@click.option("--browser/--no-browser", default=False, help="Open it in a web browser.")
@json_option
@pass_app
def open_command(app: App, instance: str, port: str | None, browser: bool, as_json: bool) -> None:
    """Print the URL of an instance's exposed port through the gateway."""
    scope = app.scope()
    found = scope.client.get_instance(
        scope.tenant_id, scope.project_id, _instance_id(scope, instance)
    )
    chosen = port or _first_exposed_port(scope, found)
    url = f"{scope.client.gateway}/v1/apps/instances/{found['id']}/ports/{chosen}/"
    if browser:
        import webbrowser

        webbrowser.open(url)
    if as_json:
        emit_json({"instance_id": found["id"], "url": url})
        return
    note(url)


@app.command("logs")
@click.argument("instance")
@click.option("-f", "--follow", is_flag=True, help="Keep printing what the replica writes.")
@click.option("--replica", help="A replica's id (default: the first running one).")
@json_option
@pass_app
def logs(app: App, instance: str, follow: bool, replica: str | None, as_json: bool) -> None:
    """Print a replica's stdout and stderr, as its node keeps them."""
    import sys

    if follow and as_json:
        raise click.UsageError("--json prints what the node kept so far: leave out --follow")
    scope = app.scope()
    instance_id = _instance_id(scope, instance)
    chunks = scope.client.instance_logs(
        scope.tenant_id, scope.project_id, instance_id, follow=follow, replica=replica
    )
    if as_json:
        text = b"".join(chunks).decode("utf-8", "replace")
        emit_json({"instance_id": instance_id, "replica": replica, "logs": text})
        return
    out = sys.stdout.buffer
    try:
        for chunk in chunks:
            out.write(chunk)
            out.flush()
    except KeyboardInterrupt:
        pass
