"""App workloads (node_agent/workloads.py): a bundle's layers unpack only inside the working
directory (each way out refused), ports become PORT / PORT_<NAME> and expand in the argv
(nothing else does), logs stay bounded, and the prober's readiness follows the rules."""

import io
import json
import tarfile
from pathlib import Path

import pytest

from gpucloud_contracts.node_sync import WorkloadPort, WorkloadProbe, WorkloadRuntime
from gpucloud_trust import bundle as bundles
from gpucloud_trust.bundle import BundleError
from gpucloud_trust.digests import digest_bytes
from node_agent.workloads import (
    PROBE_FAILED,
    PROCESS_EXITED,
    READY,
    STARTING,
    UNREADY,
    Prober,
    expand_argv,
    port_env,
    read_log,
    trim_log,
    unpack_layers,
    workload_env,
)


def _layout(tmp_path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    """An OCI layout whose one layer is a tar of exactly these members (built by hand, as
    a hostile publisher could)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    layer = buf.getvalue()
    layout = tmp_path / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)

    def blob(raw: bytes) -> bundles.Descriptor:
        d = digest_bytes(raw)
        bundles.blob_path(layout, d).write_bytes(raw)
        return d

    layer_digest = blob(layer)
    config = b"{}"
    config_digest = blob(config)
    raw = bundles.manifest_bytes(
        bundles.Descriptor(bundles.CONFIG_MEDIA_TYPE, config_digest, len(config)),
        [bundles.Descriptor(bundles.LAYER_MEDIA_TYPE, layer_digest, len(layer))],
    )
    manifest_digest = blob(raw)
    (layout / "index.json").write_text(json.dumps({
        "schemaVersion": 2, "mediaType": bundles.INDEX_MEDIA_TYPE,
        "manifests": [{"mediaType": bundles.MANIFEST_MEDIA_TYPE, "digest": manifest_digest,
                       "size": len(raw)}],
    }))  # fmt: skip
    return layout


def _file(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def _entry(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def test_a_built_bundle_unpacks_with_its_files_dirs_modes_and_inner_links(tmp_path):
    src = tmp_path / "src"
    (src / "app" / "static").mkdir(parents=True)
    (src / "app" / "static" / "index.html").write_text("hello")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    (src / "app" / "latest").symlink_to("static")
    built = bundles.build(src, tmp_path / "layout")
    root = tmp_path / "work"
    assert unpack_layers(built.layout, root) > 0
    assert (root / "app" / "static" / "index.html").read_text() == "hello"
    assert (root / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (root / "app" / "latest" / "index.html").read_text() == "hello"


@pytest.mark.parametrize(
    "members",
    [
        [_file("/etc/evil")],  # absolute
        [_file("../evil")],  # climbs
        [_file("a/../../evil")],
        [_entry("out", tarfile.SYMTYPE, "/etc")],  # a link to an absolute path
        [_entry("out", tarfile.SYMTYPE, "../..")],  # a link that leaves
        # a link through a link that is lexically inside and really outside
        [_entry("d", tarfile.SYMTYPE, "."), _entry("e", tarfile.SYMTYPE, "d/..")],
        [_entry("hard", tarfile.LNKTYPE, "x")],  # hard link
        [_entry("fifo", tarfile.FIFOTYPE)],
        [_entry("dev", tarfile.CHRTYPE)],
        [_entry("blk", tarfile.BLKTYPE)],
    ],
    ids=["absolute", "dotdot", "inner-dotdot", "link-absolute", "link-leaves",
         "link-through-link", "hardlink", "fifo", "chardev", "blockdev"],
)  # fmt: skip
def test_each_way_out_of_the_working_directory_is_refused(tmp_path, members):
    root = tmp_path / "work"
    with pytest.raises(BundleError) as refused:
        unpack_layers(_layout(tmp_path, *members), root)
    assert refused.value.reason == "layer-unsafe"
    assert not (tmp_path / "evil").exists()
    escaped = [p for p in root.rglob("*") if p.is_symlink()]
    assert all(str(p.resolve()).startswith(str(root.resolve())) for p in escaped)


def test_a_file_written_through_an_earlier_link_that_leads_out_is_refused(tmp_path):
    # the link itself is lexically inside ("sub" -> "."), then "sub/../x" is refused by
    # name; "sub/x" writes inside; nothing reaches the parent of the working directory
    outside = tmp_path / "outside"
    outside.mkdir()
    members = [_entry("ok", tarfile.SYMTYPE, "."), _file("ok/inner", b"in")]
    root = tmp_path / "work"
    unpack_layers(_layout(tmp_path, *members), root)
    assert (root / "inner").read_bytes() == b"in"
    assert list(outside.iterdir()) == []


RUNTIME = WorkloadRuntime(
    command=["srv", "--port=${PORT}", "--admin", "${PORT_ADMIN_UI}", "${HOME}", "$PORT", "${X}"],
    ports=[WorkloadPort(name="http", port=8080, expose=True),
           WorkloadPort(name="admin-ui", port=9000)],
    env={"PORT": "1", "MODE": "prod", "GPUCLOUD_ALLOCATION_ID": "forged"},
)  # fmt: skip


def test_ports_become_env_and_expand_in_the_argv_and_nothing_else_does():
    ports = {"8080": 41000, "9000": 41001}
    assert port_env(RUNTIME, ports) == {
        "PORT": "41000", "PORT_HTTP": "41000", "PORT_ADMIN_UI": "41001",
    }  # fmt: skip
    env = workload_env({"PATH": "/bin", "HOME": "/w"}, RUNTIME, ports, "alloc-1")
    # the manifest's env cannot override the ports or the allocation id
    assert (env["PORT"], env["GPUCLOUD_ALLOCATION_ID"], env["MODE"]) == ("41000", "alloc-1", "prod")
    assert expand_argv(RUNTIME.command, env) == [
        "srv", "--port=41000", "--admin", "41001", "${HOME}", "$PORT", "${X}",
    ]  # fmt: skip


def test_the_log_stays_bounded_and_reads_oldest_first(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"a" * 100)
    trim_log(log, limit=50)
    assert log.read_bytes() == b"" and (tmp_path / "a.log.1").read_bytes() == b"a" * 100
    log.write_bytes(b"b" * 10)
    trim_log(log, limit=50)
    assert read_log(log) == b"a" * 100 + b"b" * 10
    assert read_log(log, offset=5) == b"b" * 5


def test_readiness_starting_ready_then_unready_after_the_threshold():
    probe = WorkloadProbe(port=8080, path="/", failure_threshold=2)
    p = Prober(probe, 41000, restarted=False)
    assert p.readiness == STARTING
    p.observe(False)
    p.observe(False)
    p.observe(False)
    assert p.readiness == STARTING  # never ready: failures do not make it unready
    p.observe(True)
    assert (p.readiness, p.reason) == (READY, None)
    p.observe(False)
    assert p.readiness == READY  # one failure is below the threshold
    p.observe(False)
    assert (p.readiness, p.reason) == (UNREADY, PROBE_FAILED)
    p.observe(True)
    assert p.readiness == READY
    restarted = Prober(probe, 41000, restarted=True)
    assert (restarted.readiness, restarted.reason) == (UNREADY, PROCESS_EXITED)
    assert Prober(None, None, restarted=False).readiness == READY  # nothing to probe
