"""gpucloud bundle: a publisher's runtime bundle step by step, with the private key never
leaving this machine (docs/cli.md "Bundles", docs/registry.md).

- `bundle build [DIR|FILE] [--out LAYOUT]` builds the app's bundle (the manifest's folder as
  one layer, gpucloud.yaml as the config blob) into an OCI image layout here, offline. The
  layout's `gpucloud-release.json` names the app, version and manifest digest, and collects
  the release signatures.
- `bundle sign LAYOUT --key FILE` signs an in-toto release statement (DSSE) of the bundle
  digest for the tenant, app and version, offline, and adds it to the layout.
- `bundle verify LAYOUT` checks offline what a node checks before running it: the release
  signatures (against `--public-key` files, or the tenant's keys registry trusts now), the
  manifest bytes and every blob's size and digest. The first failure is the reason given.
- `bundle push LAYOUT` creates the app when it is new, uploads the blobs through registry
  (which checks every digest), publishes the version and attaches the signatures.
- `bundle promote APP VERSION --to CHANNEL`: as `app promote`.

`app publish` is build + push (+ sign with --key) in one step.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from gpucloud_cli.app import App, Scope, json_option, pass_app
from gpucloud_cli.commands.apps import _manifest_path, load_manifest, promote
from gpucloud_cli.output import emit_json, note
from gpucloud_cli.sdk.errors import BundleUnverified, InvalidInput

RELEASE_FILE = "gpucloud-release.json"


@dataclass
class LocalRelease:
    """What a layout built here carries besides the OCI files: which release it is, and the
    release signatures made for it so far (DSSE envelopes, JSON)."""

    app: str
    version: str
    digest: str
    envelopes: list[str] = field(default_factory=list)

    def save(self, layout: Path) -> None:
        document = {
            "schema_version": 1,
            "app": self.app,
            "version": self.version,
            "digest": self.digest,
            "envelopes": self.envelopes,
        }
        (layout / RELEASE_FILE).write_text(json.dumps(document, indent=2) + "\n")

    @classmethod
    def load(cls, layout: Path) -> LocalRelease:
        path = layout / RELEASE_FILE
        try:
            data = json.loads(path.read_text())
            release = cls(data["app"], data["version"], data["digest"], list(data["envelopes"]))
        except FileNotFoundError:
            raise InvalidInput(
                "layout", f"{layout} has no {RELEASE_FILE}: build it with `gpucloud bundle build`"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidInput("layout", f"{path} is not usable: {exc}") from None
        return release


def build_layout(target: str, out: Path) -> tuple[LocalRelease, Any]:
    """Build the bundle of the app whose manifest `target` names into the layout `out`;
    signatures of the same digest made before are kept, others dropped."""
    from gpucloud_manifest import to_builtins
    from gpucloud_trust import bundle as bundles

    path = _manifest_path(target)
    manifest = load_manifest(path)
    built = bundles.build(path.parent.resolve(), out, config=to_builtins(manifest))
    envelopes: list[str] = []
    if (out / RELEASE_FILE).exists():
        try:
            before = LocalRelease.load(out)
        except InvalidInput:
            before = None
        if before is not None and (before.digest, before.app, before.version) == (
            built.digest, manifest.name, manifest.version,
        ):  # fmt: skip
            envelopes = before.envelopes
    release = LocalRelease(manifest.name, manifest.version, built.digest, envelopes)
    release.save(out)
    return release, built


def _open_layout(layout_dir: str) -> tuple[Path, LocalRelease, Any]:
    """The layout, its release file and its manifest, checked against each other."""
    from gpucloud_trust import bundle as bundles

    layout = Path(layout_dir)
    release = LocalRelease.load(layout)
    try:
        manifest = bundles.load_layout(layout)
    except bundles.BundleError as exc:
        raise BundleUnverified(f"{exc.reason}: {exc.detail}", reason=exc.reason) from None
    if manifest.digest != release.digest:
        raise BundleUnverified(
            f"the layout's manifest is {manifest.digest}, {RELEASE_FILE} names {release.digest}",
            reason="manifest-digest",
        )
    return layout, release, manifest


def sign_release(release: LocalRelease, tenant_id: str, key_file: Path) -> str:
    """A release statement of the bundle for the tenant, app and version, signed here."""
    from gpucloud_trust import intoto
    from gpucloud_trust.keys import SigningKey

    signer = SigningKey.load(key_file.expanduser())
    envelope = intoto.release_statement(
        release.digest, tenant=tenant_id, app=release.app, version=release.version
    ).sign([signer])
    return envelope.to_json().decode()


def push_layout(scope: Scope, release: LocalRelease, layout: Path, manifest: Any) -> dict[str, Any]:
    """Create the app (when new), upload every blob, publish the version, attach each
    signature. Every step is idempotent: pushing again changes nothing."""
    from gpucloud_trust import bundle as bundles
    from gpucloud_trust.dsse import Envelope

    where = (scope.tenant_id, scope.project_id)
    created = scope.client.create_app(*where, release.app)
    uploaded = sum(
        scope.client.upload_blob(
            *where, release.app, blob.digest, bundles.blob_path(layout, blob.digest).read_bytes()
        )
        for blob in manifest.blobs
    )
    document = scope.client.publish_version(*where, release.app, release.version, manifest.raw)
    for text in release.envelopes:
        keyids = "-".join(s.keyid for s in Envelope.from_json(text).signatures)
        document = scope.client.add_statement(
            *where, release.app, release.version, text,
            key=f"cli-sign-{release.digest}-{keyids}",
        )  # fmt: skip
    return {
        "app": release.app,
        "version": release.version,
        "digest": release.digest,
        "app_created": created,
        "blobs_uploaded": uploaded,
        "signatures_attached": len(release.envelopes),
        "release": document,
    }


@click.group("bundle")
def bundle() -> None:
    """Runtime bundles: build, sign, verify here; push and promote through registry."""


@bundle.command("build")
@click.argument("target", default=".", metavar="[DIR|FILE]")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="The OCI layout to write (default: .gpucloud/NAME-VERSION next to gpucloud.yaml).",
)
@json_option
def build(target: str, out: str | None, as_json: bool) -> None:
    """Build the app's bundle into an OCI image layout here (offline)."""
    path = _manifest_path(target)
    manifest = load_manifest(path)
    layout = Path(out) if out else path.parent / ".gpucloud" / f"{manifest.name}-{manifest.version}"
    release, built = build_layout(target, layout)
    size = sum(b.size for b in built.manifest.blobs)
    if as_json:
        emit_json(
            {
                "layout": str(layout),
                "app": release.app,
                "version": release.version,
                "digest": release.digest,
                "blobs": len(built.manifest.blobs),
                "size": size,
                "signatures": len(release.envelopes),
            }
        )
        return
    note(f"built {release.app} {release.version} ({release.digest}) into {layout}, {size} bytes")


@bundle.command("sign")
@click.argument("layout", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--key", "key_file", type=click.Path(dir_okay=False, exists=True), required=True,
    help="The publisher key (`gpucloud app key create` made it).",
)  # fmt: skip
@click.option("--tenant", "tenant_id", help="The tenant the release is for (default: context).")
@json_option
@pass_app
def sign(app: App, layout: str, key_file: str, tenant_id: str | None, as_json: bool) -> None:
    """Sign the bundle's release statement with a key on this machine (offline)."""
    from gpucloud_trust.dsse import Envelope

    where, release, _ = _open_layout(layout)
    tenant = tenant_id or app.context().tenant_id
    envelope = sign_release(release, tenant, Path(key_file))
    keyid = Envelope.from_json(envelope).signatures[0].keyid
    mine = [e for e in release.envelopes if keyid in _keyids(e)]
    if not mine:  # signing twice with one key adds nothing
        release.envelopes.append(envelope)
        release.save(where)
    if as_json:
        emit_json(
            {
                "layout": str(where),
                "digest": release.digest,
                "key_id": keyid,
                "signatures": len(release.envelopes),
            }
        )
        return
    note(f"signed {release.app} {release.version} with {keyid}" + (" (again)" if mine else ""))


def _keyids(envelope: str) -> set[str]:
    from gpucloud_trust.dsse import Envelope

    return {s.keyid for s in Envelope.from_json(envelope).signatures}


@bundle.command("verify")
@click.argument("layout", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--public-key", "public_keys", multiple=True, type=click.Path(dir_okay=False, exists=True),
    help="Trust these PEM public keys (offline); default: the keys registry trusts now.",
)  # fmt: skip
@click.option("--threshold", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--tenant", "tenant_id", help="The tenant the release is for (default: context).")
@json_option
@pass_app
def verify(
    app: App,
    layout: str,
    public_keys: tuple[str, ...],
    threshold: int,
    tenant_id: str | None,
    as_json: bool,
) -> None:
    """Check the bundle as a node does before running it: signatures, manifest, blobs."""
    import datetime as dt

    from gpucloud_trust import bundle as bundles
    from gpucloud_trust.dsse import Envelope
    from gpucloud_trust.gate import key_counts
    from gpucloud_trust.keys import PublicKey

    where, release, _ = _open_layout(layout)
    if public_keys:
        tenant = tenant_id or app.context().tenant_id
        trusted = [PublicKey.from_pem(Path(p).read_bytes()) for p in public_keys]
        source = "the given public keys"
    else:
        scope = app.scope()
        tenant = tenant_id or scope.tenant_id
        now = dt.datetime.now(dt.UTC)
        trusted = [
            PublicKey.from_base64(k["public_key"])
            for k in scope.client.list_publisher_keys(tenant)
            if key_counts(k["status"], _time(k.get("expires_at")), now)
        ]
        source = "the keys registry trusts for the tenant now"
    try:
        verified = bundles.verify_layout(
            where,
            [Envelope.from_json(e) for e in release.envelopes],
            trusted,
            manifest_digest=release.digest,
            threshold=threshold,
            claim=bundles.ReleaseClaim(tenant, release.app, release.version),
        )
    except bundles.BundleError as exc:
        raise BundleUnverified(f"{exc.reason}: {exc.detail}", reason=exc.reason) from None
    if as_json:
        emit_json(
            {
                "layout": str(where),
                "app": release.app,
                "version": release.version,
                "digest": release.digest,
                "verified": True,
                "signer_key_ids": list(verified.signer_keyids),
            }
        )
        return
    note(
        f"verified {release.app} {release.version} ({release.digest}): signed by"
        f" {', '.join(verified.signer_keyids)} ({source}); manifest and every blob match"
    )


def _time(value: str | None) -> Any:
    import datetime as dt

    return dt.datetime.fromisoformat(value) if value else None


@bundle.command("push")
@click.argument("layout", type=click.Path(file_okay=False, exists=True))
@json_option
@pass_app
def push(app: App, layout: str, as_json: bool) -> None:
    """Upload the bundle through registry, publish the version, attach its signatures."""
    where, release, manifest = _open_layout(layout)
    result = push_layout(app.scope(), release, where, manifest)
    if as_json:
        emit_json(result)
        return
    note(
        f"pushed {release.app} {release.version} ({release.digest[:19]}...):"
        f" {result['blobs_uploaded']} new blobs, {len(release.envelopes)} signatures"
        + ("" if release.envelopes else "; unsigned: `gpucloud bundle sign` it to promote it")
    )


bundle.add_command(promote, "promote")


def build_in_temp(target: str) -> tuple[LocalRelease, Any, Path, tempfile.TemporaryDirectory]:
    """For `app publish`: build into a temporary layout the caller cleans up."""
    tmp = tempfile.TemporaryDirectory(prefix="gpucloud-bundle-")
    layout = Path(tmp.name) / "layout"
    release, built = build_layout(target, layout)
    return release, built.manifest, layout, tmp
