"""Runtime bundles: what a node runs, as an OCI image manifest plus its blobs.

A bundle is an OCI image manifest (``application/vnd.oci.image.manifest.v1+json``, artifact
type ``application/vnd.gpucloud.bundle.v1``) whose config is a small JSON document (the
entrypoint and environment a node starts) and whose layers are uncompressed tars. The
bundle's identity is the SHA-256 digest of the manifest bytes; the manifest names every blob
by digest and size, so the manifest digest pins every byte.

Building (`build`) writes an OCI image layout (``oci-layout``, ``index.json``,
``blobs/sha256/<hex>``) from one directory per layer. Tars are deterministic: entries sorted,
mtime 0, uid/gid 0 with no user or group names, modes reduced to 0755/0644, PAX format, so the
same tree always gives the same digest on any machine.

Verifying (`verify`) is what a node does after pulling and before running, offline, in this
order (cheapest first; the first failure is the reason given):
1. the release envelopes: at least `threshold` distinct trusted keys signed a release
   statement (in-toto, DSSE) for this tenant, app and version;
2. the statement's subject is the manifest digest, and the manifest bytes hash to it;
3. every blob the manifest names (config and layers) has that size and that digest.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from gpucloud_trust.digests import (
    CHUNK,
    Digester,
    InvalidDigest,
    check_digest,
    digest_bytes,
    digest_stream,
)
from gpucloud_trust.dsse import Envelope, VerificationFailed
from gpucloud_trust.dsse import verify as verify_envelope
from gpucloud_trust.intoto import RELEASE, InvalidStatement, Statement
from gpucloud_trust.keys import PublicKey

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
ARTIFACT_TYPE = "application/vnd.gpucloud.bundle.v1"
CONFIG_MEDIA_TYPE = "application/vnd.gpucloud.bundle.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
TITLE = "org.opencontainers.image.title"
REF_NAME = "org.opencontainers.image.ref.name"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


class BundleError(ValueError):
    """A bundle that fails to build or verify; `reason` is a stable code a gate reports:
    ``unsigned``, ``untrusted``, ``below-threshold``, ``statement``, ``subject-mismatch``,
    ``manifest-digest``, ``manifest-invalid``, ``blob-missing``, ``blob-size``,
    ``blob-digest``, ``source``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest}
        out["size"] = self.size
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def parse(cls, data: Any, where: str) -> Descriptor:
        if not isinstance(data, dict):
            raise BundleError("manifest-invalid", f"{where} is not an object")
        media_type, digest, size = data.get("mediaType"), data.get("digest"), data.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise BundleError("manifest-invalid", f"{where}.mediaType is required")
        try:
            check_digest(digest)
        except InvalidDigest as exc:
            raise BundleError("manifest-invalid", f"{where}.digest: {exc}") from None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BundleError("manifest-invalid", f"{where}.size must be an integer >= 0")
        annotations = data.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise BundleError("manifest-invalid", f"{where}.annotations must map strings")
        return cls(media_type, digest, size, annotations)


@dataclass(frozen=True)
class Manifest:
    """A parsed OCI image manifest, with the exact bytes it was parsed from."""

    raw: bytes
    config: Descriptor
    layers: tuple[Descriptor, ...]
    artifact_type: str | None = None

    @property
    def digest(self) -> str:
        return digest_bytes(self.raw)

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        return (self.config, *self.layers)

    @property
    def total_size(self) -> int:
        return len(self.raw) + sum(d.size for d in self.blobs)

    @classmethod
    def parse(cls, raw: bytes) -> Manifest:
        if len(raw) > MAX_MANIFEST_BYTES:
            raise BundleError("manifest-invalid", f"larger than {MAX_MANIFEST_BYTES} bytes")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BundleError("manifest-invalid", f"not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("schemaVersion") != 2:
            raise BundleError("manifest-invalid", "schemaVersion must be 2")
        if data.get("mediaType") != MANIFEST_MEDIA_TYPE:
            raise BundleError("manifest-invalid", f"mediaType must be {MANIFEST_MEDIA_TYPE}")
        layers = data.get("layers")
        if not isinstance(layers, list):
            raise BundleError("manifest-invalid", "layers must be a list")
        artifact_type = data.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise BundleError("manifest-invalid", "artifactType must be a string")
        return cls(
            raw,
            Descriptor.parse(data.get("config"), "config"),
            tuple(Descriptor.parse(layer, f"layers[{i}]") for i, layer in enumerate(layers)),
            artifact_type,
        )


def manifest_bytes(config: Descriptor, layers: Sequence[Descriptor]) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": config.to_dict(),
        "layers": [d.to_dict() for d in layers],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


# ----------------------------------------------------------------------------- building


@dataclass(frozen=True)
class Bundle:
    """A built bundle: its manifest and the OCI image layout holding every blob."""

    manifest: Manifest
    layout: Path

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def blob_path(self, digest: str) -> Path:
        return blob_path(self.layout, digest)


def blob_path(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / check_digest(digest).removeprefix("sha256:")


class _HashingWriter:
    """A write-only file that hashes what passes through it."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.digester = Digester()

    def write(self, data: bytes) -> int:
        self.digester.update(data)
        return self.target.write(data)

    def flush(self) -> None:
        self.target.flush()


def _entries(root: Path) -> Iterator[Path]:
    """Every path under root, sorted by its relative POSIX path (deterministic order)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        found.extend(base / d for d in dirnames)
        found.extend(base / f for f in filenames)
    yield from sorted(found, key=lambda p: p.relative_to(root).as_posix().encode())


def _tarinfo(path: Path, name: str) -> tarfile.TarInfo:
    st = path.lstat()
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    executable = bool(st.st_mode & stat.S_IXUSR)
    if stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
        info.mode = 0o777
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    elif stat.S_ISREG(st.st_mode):
        info.type = tarfile.REGTYPE
        info.size = st.st_size
        info.mode = 0o755 if executable else 0o644
    else:
        raise BundleError("source", f"{name}: only files, directories and symlinks are bundled")
    return info


def _write_blob(layout: Path, write: Callable[[BinaryIO], None]) -> tuple[str, int]:
    """Stream a blob into the layout (temp file, then renamed to its digest)."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            writer = _HashingWriter(out)
            write(writer)  # type: ignore[arg-type]
        digest, size = writer.digester.digest, writer.digester.size
        os.replace(tmp, blob_path(layout, digest))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest, size


def _tar_layer(source: Path) -> Callable[[BinaryIO], None]:
    def write(out: BinaryIO) -> None:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for path in _entries(source):
                name = path.relative_to(source).as_posix()
                info = _tarinfo(path, name)
                if info.isreg():
                    with path.open("rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)

    return write


def build(
    layers: Path | Sequence[Path],
    layout: Path,
    *,
    config: Mapping[str, Any] | None = None,
    ref: str = "latest",
) -> Bundle:
    """Build a bundle from one directory per layer into the OCI image layout `layout`."""
    sources = [layers] if isinstance(layers, Path) else list(layers)
    if not sources:
        raise BundleError("source", "a bundle needs at least one layer directory")
    for source in sources:
        if not source.is_dir():
            raise BundleError("source", f"{source} is not a directory")
    layout.mkdir(parents=True, exist_ok=True)
    descriptors = []
    for source in sources:
        digest, size = _write_blob(layout, _tar_layer(source))
        descriptors.append(Descriptor(LAYER_MEDIA_TYPE, digest, size, {TITLE: source.name}))
    config_raw = json.dumps(dict(config or {}), sort_keys=True, separators=(",", ":")).encode()
    config_digest, config_size = _write_blob(layout, lambda out: out.write(config_raw))
    raw = manifest_bytes(Descriptor(CONFIG_MEDIA_TYPE, config_digest, config_size), descriptors)
    manifest_digest, manifest_size = _write_blob(layout, lambda out: out.write(raw))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [
            Descriptor(
                MANIFEST_MEDIA_TYPE, manifest_digest, manifest_size, {REF_NAME: ref}
            ).to_dict()
        ],
    }
    (layout / "index.json").write_text(json.dumps(index, sort_keys=True))
    return Bundle(Manifest.parse(raw), layout)


def load_layout(layout: Path, ref: str | None = None) -> Manifest:
    """The manifest an OCI image layout's index names (by ref, or its only manifest)."""
    try:
        index = json.loads((layout / "index.json").read_text())
        entries = index["manifests"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError("manifest-invalid", f"no usable index.json in {layout}: {exc}") from None
    chosen = [
        e
        for e in entries
        if isinstance(e, dict)
        and (ref is None or (e.get("annotations") or {}).get(REF_NAME) == ref)
    ]
    if len(chosen) != 1:
        raise BundleError("manifest-invalid", f"index.json names {len(chosen)} manifests for {ref}")
    descriptor = Descriptor.parse(chosen[0], "index.manifests")
    try:
        raw = blob_path(layout, descriptor.digest).read_bytes()
    except OSError:
        raise BundleError("blob-missing", f"manifest {descriptor.digest}") from None
    if digest_bytes(raw) != descriptor.digest:
        raise BundleError("manifest-digest", "the manifest's bytes do not match index.json")
    return Manifest.parse(raw)


# ----------------------------------------------------------------------------- verifying


@dataclass(frozen=True)
class ReleaseClaim:
    """What the release statement must say, besides naming the manifest digest."""

    tenant: str
    app: str
    version: str


@dataclass(frozen=True)
class VerifiedRelease:
    manifest_digest: str
    signer_keyids: tuple[str, ...]


def release_signers(
    envelopes: Sequence[Envelope],
    trusted: Sequence[PublicKey],
    manifest_digest: str,
    claim: ReleaseClaim | None = None,
) -> tuple[str, ...]:
    """The distinct trusted keys that signed a release statement of `manifest_digest` (and of
    `claim`'s tenant, app and version), across every envelope; envelopes that do not verify
    or say something else count for nothing."""
    found: dict[str, None] = {}
    for envelope in envelopes:
        try:
            verified = verify_envelope(envelope, trusted, threshold=1)
            statement = Statement.parse(verified.payload)
        except (VerificationFailed, InvalidStatement):
            continue
        if statement.predicate_type != RELEASE or not statement.names_digest(manifest_digest):
            continue
        if claim is not None and not _claims(statement, claim):
            continue
        found.update(dict.fromkeys(verified.signer_keyids))
    return tuple(found)


def _claims(statement: Statement, claim: ReleaseClaim) -> bool:
    p = statement.predicate
    return (p.get("tenant"), p.get("app"), p.get("version")) == (
        claim.tenant,
        claim.app,
        claim.version,
    )


def verify_release(
    envelopes: Sequence[Envelope],
    trusted: Sequence[PublicKey],
    manifest_digest: str,
    *,
    threshold: int = 1,
    claim: ReleaseClaim | None = None,
) -> VerifiedRelease:
    if not envelopes:
        raise BundleError("unsigned", "no release statement")
    signed = release_signers(envelopes, trusted, manifest_digest, claim)
    if not signed:
        raise BundleError("untrusted", "no trusted key signed a release statement of this bundle")
    if len(signed) < threshold:
        raise BundleError(
            "below-threshold", f"{len(signed)} of the required {threshold} trusted signers"
        )
    return VerifiedRelease(manifest_digest, signed)


BlobOpener = Callable[[str], AbstractContextManager[BinaryIO]]


def layout_opener(layout: Path) -> BlobOpener:
    def open_blob(digest: str) -> AbstractContextManager[BinaryIO]:
        return blob_path(layout, digest).open("rb", buffering=0)  # type: ignore[return-value]

    return open_blob


def verify_blobs(manifest: Manifest, open_blob: BlobOpener) -> None:
    """Every blob the manifest names has its declared size and digest."""
    for descriptor in manifest.blobs:
        try:
            with open_blob(descriptor.digest) as stream:
                digest, size = digest_stream(stream)
        except (OSError, KeyError):
            raise BundleError("blob-missing", descriptor.digest) from None
        if size != descriptor.size:
            raise BundleError(
                "blob-size", f"{descriptor.digest}: {size} bytes, manifest says {descriptor.size}"
            )
        if digest != descriptor.digest:
            raise BundleError("blob-digest", f"{descriptor.digest}: the bytes hash to {digest}")


def verify(
    manifest_raw: bytes,
    open_blob: BlobOpener,
    envelopes: Sequence[Envelope],
    trusted: Sequence[PublicKey],
    *,
    manifest_digest: str | None = None,
    threshold: int = 1,
    claim: ReleaseClaim | None = None,
) -> VerifiedRelease:
    """Verify a pulled bundle offline (signatures, manifest, every blob); raise BundleError
    naming the first reason it fails. `manifest_digest` is the digest the caller expects (the
    one the launch named); without it, the digest of the manifest bytes is used."""
    actual = digest_bytes(manifest_raw)
    expected = manifest_digest or actual
    release = verify_release(envelopes, trusted, expected, threshold=threshold, claim=claim)
    if actual != expected:
        raise BundleError(
            "manifest-digest", f"the manifest hashes to {actual}, the release names {expected}"
        )
    verify_blobs(Manifest.parse(manifest_raw), open_blob)
    return release


def verify_layout(
    layout: Path,
    envelopes: Sequence[Envelope],
    trusted: Sequence[PublicKey],
    *,
    manifest_digest: str | None = None,
    threshold: int = 1,
    claim: ReleaseClaim | None = None,
    ref: str | None = None,
) -> VerifiedRelease:
    """`verify` for a bundle pulled into an OCI image layout. With `manifest_digest`, that
    manifest blob is checked (whatever index.json says)."""
    if manifest_digest is not None:
        try:
            raw = blob_path(layout, manifest_digest).read_bytes()
        except OSError:
            raise BundleError("blob-missing", f"manifest {manifest_digest}") from None
    else:
        raw = load_layout(layout, ref).raw
    return verify(
        raw,
        layout_opener(layout),
        envelopes,
        trusted,
        manifest_digest=manifest_digest,
        threshold=threshold,
        claim=claim,
    )


__all__ = [
    "ARTIFACT_TYPE",
    "CHUNK",
    "CONFIG_MEDIA_TYPE",
    "LAYER_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "Bundle",
    "BundleError",
    "Descriptor",
    "Manifest",
    "ReleaseClaim",
    "VerifiedRelease",
    "build",
    "load_layout",
    "verify",
    "verify_blobs",
    "verify_layout",
    "verify_release",
]
