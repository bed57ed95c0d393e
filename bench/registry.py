"""Registry benchmark: what trust costs on the node, and what registry costs on upload.

1. **verify vs sha256**: a bundle with one layer of `--size-mib` MiB (random bytes, built by
   `gpucloud_trust.bundle.build` into an OCI image layout) is verified the way a node agent
   verifies it after pulling (`gpucloud_trust.bundle.verify_layout`: the release envelope's
   signature, the manifest digest, every blob's size and sha256), and the same layer file is
   hashed with plain hashlib sha256 (1 MiB reads). Best of `--repeat` runs each, warm page
   cache; the figure is seconds per GiB and the ratio (target <= 1.10).
2. **upload throughput**: a blob of `--upload-mib` MiB is uploaded (a) straight to the OCI
   registry (POST, one streamed PATCH, PUT ?digest=: the distribution API as registry itself
   uses it) and (b) through registry's `PUT .../blobs/{digest}` (registry hashes while it
   streams into the OCI registry), registry running as its own process (`python -m
   registry`) on a scratch database. MiB/s each, and the ratio.

3. **launch-gate check** (gpuaas, issue 12 item 5): gpuaas's migrations on a scratch
   database, its projection holding one promoted release signed by one of the tenant's keys
   (plus `--gate-noise` other releases and keys of other tenants); `app.launch_gate.check`
   as a launch runs it (read the project's channel, the release row, the tenant's keys, then
   the pure decision with its Ed25519 verification), one unit of work each, `--gate-checks`
   times: p50/p99 ms, target p99 <= 2 ms. Baseline in the same run, interleaved: the same
   three reads in one unit of work without the decision (what the projection costs alone).

Needs devstack's infra (`ensure_infra()`: Kafka, PostgreSQL, the OCI registry).
"""

import argparse
import asyncio
import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.common import environment, print_table, save_results, scratch_database
from bench.report import Headline, Summary

SUMMARY = (
    "node-side bundle verify cost per GiB vs plain sha256; blob upload MiB/s via registry vs OCI;"
    " gpuaas launch-gate check p99 vs its projection reads alone"
)
CHUNK = 1 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size-mib", type=int, default=1024, help="layer size to verify")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each verify (best kept)")
    parser.add_argument("--upload-mib", type=int, default=256, help="blob size to upload")
    parser.add_argument(
        "--parts", default="verify,upload,gate", help="comma-separated: verify, upload, gate"
    )
    parser.add_argument("--gate-checks", type=int, default=2000, help="launch-gate checks timed")
    parser.add_argument("--gate-noise", type=int, default=1000, help="other releases projected")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 64 MiB layer, 16 MiB blob, 300 checks"
    )


def _random_file(path: Path, mib: int) -> None:
    block = os.urandom(CHUNK)
    with path.open("wb") as f:
        for i in range(mib):
            f.write(block[i % 7 :] + block[: i % 7])  # distinct blocks, cheap to make


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(view):
            h.update(view[:n])
    return h.hexdigest()


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def verify_part(size_mib: int, repeat: int, work: Path) -> dict[str, Any]:
    from gpucloud_trust import bundle, intoto
    from gpucloud_trust.keys import SigningKey

    source = work / "layer"
    source.mkdir()
    _random_file(source / "weights.bin", size_mib)
    built = bundle.build(source, work / "layout")
    (source / "weights.bin").unlink()
    key = SigningKey.generate()
    claim = bundle.ReleaseClaim("tenant", "bench", "1.0.0")
    envelope = intoto.release_statement(
        built.digest, tenant=claim.tenant, app=claim.app, version=claim.version
    ).sign([key])
    layer = built.blob_path(built.manifest.layers[0].digest)
    gib = layer.stat().st_size / (1 << 30)
    _sha256(layer)  # warm the page cache for both
    plain = _best(lambda: _sha256(layer), repeat)
    verify = _best(
        lambda: bundle.verify_layout(built.layout, [envelope], [key.public], claim=claim), repeat
    )
    return {
        "layer_bytes": layer.stat().st_size,
        "sha256_s_per_gib": plain / gib,
        "verify_s_per_gib": verify / gib,
        "ratio": verify / plain,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def registry_process(database_url: str, oci: Any, kafka: str, token: str) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "GPUCLOUD_DATABASE_URL": database_url,
        "GPUCLOUD_HTTP_PORT": str(port),
        "GPUCLOUD_OPERATOR_TOKEN": token,
        "GPUCLOUD_KAFKA_BOOTSTRAP": kafka,
        "GPUCLOUD_REGISTRY_OCI_URL": oci.url,
        "GPUCLOUD_REGISTRY_OCI_USERNAME": oci.username,
        "GPUCLOUD_REGISTRY_OCI_PASSWORD": oci.password,
        "GPUCLOUD_SERVICE_NAME": "registry-bench",
        "GPUCLOUD_LOG_LEVEL": "WARNING",
    }
    env.pop("GPUCLOUD_JWKS_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "registry"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"registry did not start: {process.stderr.read().decode()[-2000:]}"
                )
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(15)


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


async def _straight_to_oci(oci: Any, path: Path, digest: str) -> float:
    auth = httpx.BasicAuth(oci.username, oci.password)
    repository = f"bench/{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=oci.url, auth=auth, timeout=300) as http:
        started = time.perf_counter()
        session = await http.post(f"/v2/{repository}/blobs/uploads/")
        location = httpx.URL(oci.url).join(session.headers["location"])
        sent = await http.patch(location, content=_file_chunks(path))
        location = httpx.URL(oci.url).join(sent.headers["location"])
        done = await http.put(location.copy_merge_params({"digest": digest}))
        elapsed = time.perf_counter() - started
    assert done.status_code == 201, done.text
    return elapsed


async def _through_registry(url: str, token: str, path: Path, digest: str) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    tenant, project = uuid.uuid4(), uuid.uuid4()
    base = f"{url}/v1/registry/tenants/{tenant}/projects/{project}/apps"
    async with httpx.AsyncClient(timeout=300, headers=headers) as http:
        created = await http.post(base, json={"name": "bench"})
        assert created.status_code == 201, created.text
        started = time.perf_counter()
        uploaded = await http.put(f"{base}/bench/blobs/{digest}", content=_file_chunks(path))
        elapsed = time.perf_counter() - started
    assert uploaded.status_code == 201, uploaded.text
    return elapsed


def upload_part(upload_mib: int, work: Path) -> dict[str, Any]:
    from devstack.infra import ensure_infra

    infra = ensure_infra()
    blob = work / "upload.bin"
    _random_file(blob, upload_mib)
    digest = "sha256:" + _sha256(blob)
    token = "bench-" + uuid.uuid4().hex
    with scratch_database(infra.pg_admin_url) as database_url:
        with registry_process(
            database_url, infra.oci_registry, infra.kafka_bootstrap, token
        ) as url:
            direct = asyncio.run(_straight_to_oci(infra.oci_registry, blob, digest))
            # the same bytes again, to another repository of a fresh app: stored anew
            via = asyncio.run(_through_registry(url, token, blob, digest))
    return {
        "blob_bytes": blob.stat().st_size,
        "oci_mib_s": upload_mib / direct,
        "registry_mib_s": upload_mib / via,
        "ratio": direct / via,
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _gate_timings(url: str, checks: int, noise: int) -> dict[str, Any]:
    import datetime as dt

    from gpuaas.app.launch_gate import check, key_facts, release_facts
    from gpuaas.domain.launch_gate import Allowed, BundleRequest, DecisionMemo, decide
    from gpuaas.store.repository import LaunchGateRepository
    from gpucloud_trust import intoto
    from gpucloud_trust.digests import digest_bytes
    from gpucloud_trust.keys import SigningKey
    from platformkit.db import Database

    db = Database(url, pool_size=2)
    tenant, project = uuid.uuid4(), uuid.uuid4()
    key = SigningKey.generate()
    now = dt.datetime.now(dt.UTC)

    async def project_release(t: uuid.UUID, p: uuid.UUID, app: str, signer: SigningKey) -> str:
        digest = digest_bytes(f"{t}{app}".encode())
        envelope = intoto.release_statement(digest, tenant=str(t), app=app, version="1.0.0")
        async with db.unit_of_work() as uow:
            repo = LaunchGateRepository(uow)
            await repo.apply_key({
                "tenant_id": t, "key_id": signer.keyid, "public_key": signer.public.raw,
                "status": "active", "expires_at": None, "as_of": now,
            })  # fmt: skip
            await repo.apply_release({
                "version_id": uuid.uuid4(), "tenant_id": t, "project_id": p, "app": app,
                "version": "1.0.0", "manifest_digest": digest,
                "channels": ["dev", "staging", "stable"], "yanked": False,
                "envelopes": [envelope.sign([signer]).to_json().decode()],
                "thresholds": {"dev": 1, "staging": 1, "stable": 1}, "sequence": 4,
                "occurred_at": now,
            })  # fmt: skip
            await uow.commit()
        return digest

    for i in range(noise):
        await project_release(uuid.uuid4(), uuid.uuid4(), f"noise-{i}", SigningKey.generate())
    digest = await project_release(tenant, project, "svc", key)
    request = BundleRequest("svc", "1.0.0", digest)

    # As a create runs them: inside the create's transaction, already begun (the timing
    # starts after a first statement, so BEGIN and COMMIT are not the gate's).
    async def gate(uow: Any) -> None:
        await check(uow, tenant, project, request, dt.datetime.now(dt.UTC))

    async def reads_only(uow: Any) -> None:  # the one projection read the check makes
        await LaunchGateRepository(uow).gate_facts(tenant, project, tenant, "svc", "1.0.0")

    async with db.unit_of_work() as uow:
        repo = LaunchGateRepository(uow)
        facts = release_facts(await repo.release(tenant, "svc", "1.0.0"))
        keys = key_facts(await repo.keys(tenant))

    async def round_trip(uow: Any) -> None:  # the floor: one statement to PostgreSQL
        await uow.fetch_one("SELECT 1")

    async def decision_only(_: Any) -> None:  # the pure decision over rows already read
        outcome = decide(tenant, project, request, "stable", facts, keys, dt.datetime.now(dt.UTC))
        assert isinstance(outcome, Allowed)

    memo = DecisionMemo()

    async def memoized(_: Any) -> None:  # the same, answered by the memo the check uses
        outcome = memo.decide(
            tenant, project, request, "stable", facts, keys, dt.datetime.now(dt.UTC)
        )
        assert isinstance(outcome, Allowed)

    async def timed(fn: Any) -> float:
        async with db.unit_of_work() as uow:
            await uow.fetch_one("SELECT 1")
            started = time.perf_counter()
            await fn(uow)
            return (time.perf_counter() - started) * 1000

    for _ in range(50):  # warm the pool, the plans, the caches
        await timed(gate)
        await timed(reads_only)
    timings: dict[str, list[float]] = {
        "gate": [], "reads": [], "decision": [], "memo": [], "round_trip": [],
    }  # fmt: skip
    steps = (
        ("gate", gate), ("reads", reads_only), ("decision", decision_only), ("memo", memoized),
        ("round_trip", round_trip),
    )  # fmt: skip
    for _ in range(checks):
        for name, fn in steps:
            timings[name].append(await timed(fn))
    await db.dispose()
    return {
        "checks": checks,
        "noise_releases": noise,
        "gate_p50_ms": _percentile(timings["gate"], 0.50),
        "gate_p99_ms": _percentile(timings["gate"], 0.99),
        "reads_p50_ms": _percentile(timings["reads"], 0.50),
        "reads_p99_ms": _percentile(timings["reads"], 0.99),
        "decision_p50_ms": _percentile(timings["decision"], 0.50),
        "decision_p99_ms": _percentile(timings["decision"], 0.99),
        "memo_p50_ms": _percentile(timings["memo"], 0.50),
        "memo_p99_ms": _percentile(timings["memo"], 0.99),
        "round_trip_p50_ms": _percentile(timings["round_trip"], 0.50),
        "round_trip_p99_ms": _percentile(timings["round_trip"], 0.99),
    }


def gate_part(checks: int, noise: int) -> dict[str, Any]:
    from devstack.infra import ensure_infra
    from gpuaas.bootstrap import DEFINITION
    from platformkit.service import migrate
    from platformkit.settings import ServiceSettings

    infra = ensure_infra()
    with scratch_database(infra.pg_admin_url) as url:
        migrate(DEFINITION, ServiceSettings("gpuaas", database_url=url))
        return asyncio.run(_gate_timings(url, checks, noise))


def main(args: argparse.Namespace) -> int:
    if args.quick:
        args.size_mib, args.repeat, args.upload_mib = 64, 1, 16
        args.gate_checks, args.gate_noise = 300, 100
    parts = set(args.parts.split(","))
    verify = upload = gate = None
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        work = Path(tmp)
        if "verify" in parts:
            (work / "v").mkdir()
            verify = verify_part(args.size_mib, args.repeat, work / "v")
            print_table(
                f"bundle verify vs plain sha256 ({args.size_mib} MiB layer, best of {args.repeat})",
                ["", "s per GiB"],
                [
                    ["sha256 (hashlib, 1 MiB reads)", f"{verify['sha256_s_per_gib']:.3f}"],
                    ["verify_layout (sig + manifest + blobs)", f"{verify['verify_s_per_gib']:.3f}"],
                    ["ratio (target <= 1.10)", f"{verify['ratio']:.3f}"],
                ],
            )
        if "upload" in parts:
            (work / "u").mkdir()
            upload = upload_part(args.upload_mib, work / "u")
            print_table(
                f"blob upload ({args.upload_mib} MiB)",
                ["", "MiB/s"],
                [
                    ["straight to the OCI registry", f"{upload['oci_mib_s']:.1f}"],
                    ["through registry (hashed while streamed)", f"{upload['registry_mib_s']:.1f}"],
                    ["registry / OCI", f"{upload['ratio']:.3f}"],
                ],
            )
    if "gate" in parts:
        gate = gate_part(args.gate_checks, args.gate_noise)
        print_table(
            f"gpuaas launch-gate check ({gate['checks']} checks, {gate['noise_releases']} other"
            " releases projected)",
            ["", "p50 ms", "p99 ms"],
            [
                ["projection read alone (baseline)", f"{gate['reads_p50_ms']:.3f}",
                 f"{gate['reads_p99_ms']:.3f}"],
                ["launch-gate check (read + decision)", f"{gate['gate_p50_ms']:.3f}",
                 f"{gate['gate_p99_ms']:.3f}"],
                ["the decision alone (pure, rows in hand)", f"{gate['decision_p50_ms']:.3f}",
                 f"{gate['decision_p99_ms']:.3f}"],
                ["the decision from the memo (what the check uses)",
                 f"{gate['memo_p50_ms']:.3f}", f"{gate['memo_p99_ms']:.3f}"],
                ["SELECT 1 round trip (the floor of any read)",
                 f"{gate['round_trip_p50_ms']:.3f}", f"{gate['round_trip_p99_ms']:.3f}"],
                ["target p99", "", "<= 2.000"],
            ],
        )  # fmt: skip
    results = {
        "environment": environment(),
        "args": vars(args) | {"func": None},
        "verify": verify,
        "upload": upload,
        "gate": gate,
    }
    results["args"].pop("func", None)
    print(f"\nresults: {save_results('registry', results)}")
    return 0


def headlines(results: dict[str, Any]) -> Summary:
    """The common schema (bench/report.py): bundle verification against a plain sha256 of
    the same bytes, uploads through registry against straight to the OCI registry, the
    launch-gate check against its projection read alone (each only if the run measured it)."""
    verify, upload, gate = results.get("verify"), results.get("upload"), results.get("gate")
    lines = []
    if verify:
        lines.append(Headline(
            "bundle verify", verify["verify_s_per_gib"], "s/GiB", better="lower",
            baseline=verify["sha256_s_per_gib"], baseline_name="plain sha256", ratio_target=1.10,
        ))  # fmt: skip
    if upload:
        lines.append(Headline(
            "blob upload through registry", upload["registry_mib_s"], "MiB/s",
            baseline=upload["oci_mib_s"], baseline_name="straight to the OCI registry",
        ))  # fmt: skip
    if gate:
        lines.append(Headline(
            "launch-gate check p99", gate["gate_p99_ms"], "ms", better="lower",
            baseline=gate["reads_p99_ms"], baseline_name="projection read alone", target=2.0,
        ))  # fmt: skip
    return Summary(headlines=lines)
