"""An app replica on the node agent, for real: a tiny signed bundle (a static file) in the
bundle directory, a runtime whose command is Python's http.server on `${PORT}`. The agent
verifies the bundle, unpacks it into the working directory, runs the argv without a shell
on an assigned host port, the probe passes (it serves the bundle's file), the output lands
in the allocation's log; killing the process makes it unready (process_exited) and the next
reconcile brings it back on the same port, ready again; release removes it all."""

import asyncio
import dataclasses
import datetime as dt
import os
import signal
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from gpuaas.app.launch_gate import registry_handler
from gpuaas.app.projects import project_handler
from gpuaas.app.replicas import request_replica
from gpuaas.bootstrap import DEFINITION
from gpuaas.settings import GpuaasSettings
from gpucloud_contracts.events.appplatform import (
    BundleRef,
    ReplicaRequest,
    ReplicaResources,
    Runtime,
)
from gpucloud_contracts.events.iam import ProjectCreated
from gpucloud_contracts.events.registry import Blob, Bundle, ReleaseChanged, SignedStatement, Signer
from gpucloud_contracts.node_sync import (
    BundleKey,
    DesiredAllocation,
    DesiredBundle,
    WorkloadPort,
    WorkloadProbe,
    WorkloadRuntime,
)
from gpucloud_trust import bundle as bundles
from gpucloud_trust import intoto
from gpucloud_trust.keys import SigningKey
from node_agent.agent import AgentSettings, NodeAgent
from node_agent.discovery import SimulatedDiscovery
from node_agent.isolation import WorkloadAccounts, harden_agent
from node_agent.reconcile import Reconciler
from node_agent.workloads import read_log
from platformkit.db import Database
from platformkit.envelope import new_event
from platformkit.http import build_service_app
from platformkit.migrate import apply_migrations
from platformkit.service import KIT_MIGRATIONS
from platformkit.settings import ServiceSettings

from ..conftest import fund_tenant, signed_config

pytestmark = pytest.mark.integration
TENANT = uuid.uuid4()
SIGNER = SigningKey.generate()
HTTP_ONLY = dataclasses.replace(DEFINITION, subscriptions=())


def _bundle_dir(tmp_path: Path, runtime: WorkloadRuntime | None = None) -> tuple[Path, str]:
    src = tmp_path / "src"
    (src / "health").mkdir(parents=True)
    (src / "health" / "ready.txt").write_text("ok from the bundle\n")
    config = signed_config(runtime or _desired("sha256:" + "0" * 64, uuid.uuid4()).runtime)
    built = bundles.build(src, tmp_path / "staging", config=config)
    root = tmp_path / "bundles"
    root.mkdir()
    built.layout.rename(root / built.digest.removeprefix("sha256:"))
    return root, built.digest


def _desired(digest: str, allocation: uuid.UUID) -> DesiredAllocation:
    envelope = intoto.release_statement(digest, tenant=str(TENANT), app="web", version="1.0.0")
    return DesiredAllocation(
        id=allocation, sku="h100-80gb", mig_profile=None, state="scheduled", instances=[],
        bundle=DesiredBundle(
            tenant_id=TENANT, app="web", version="1.0.0", digest=digest, channel="stable",
            envelopes=[envelope.sign([SIGNER]).to_json().decode()],
            keys=[BundleKey(public_key=SIGNER.public.to_base64(), status="active")],
        ),
        runtime=WorkloadRuntime(
            command=[sys.executable, "-u", "-m", "http.server", "${PORT}", "--bind", "127.0.0.1"],
            ports=[WorkloadPort(name="http", port=8080, protocol="http", expose=True)],
            env={"PYTHONDONTWRITEBYTECODE": "1"},
            probe=WorkloadProbe(port=8080, path="/health/ready.txt", interval_s=0.1,
                                timeout_s=1, initial_delay_s=0, failure_threshold=2),
        ),
    )  # fmt: skip


def _until(condition, what: str, within: float = 20.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


def test_the_bundle_runs_is_probed_restarted_after_a_kill_and_removed_on_release(tmp_path):
    bundle_dir, digest = _bundle_dir(tmp_path)
    allocation = uuid.uuid4()
    aid = str(allocation)
    r = Reconciler(tmp_path / "state" / "node.json", "exec sleep 600", bundle_dir=bundle_dir)
    desired = [_desired(digest, allocation)]
    try:
        assert r.reconcile(desired)
        assert r.observed() == {aid: "running"} and r.failures() == {}
        host = r.ports()[aid]["8080"]
        _until(lambda: r.readiness()[0].get(aid) == "ready", "ready")
        body = urllib.request.urlopen(f"http://127.0.0.1:{host}/health/ready.txt").read()
        assert body == b"ok from the bundle\n"  # served from the unpacked bundle, in its cwd
        assert b"GET /health/ready.txt" in _until(
            lambda: read_log(r.log_path(aid)), "the server's output in the log"
        )

        first = r.workloads[aid].pid
        os.killpg(first, signal.SIGKILL)
        _until(lambda: not r.workloads[aid].alive(), "the process gone")
        # still running for gpuaas, unready until restarted and probed again
        assert r.observed() == {aid: "running"}
        assert r.readiness() == ({aid: "unready"}, {aid: "process_exited"})
        assert not r.settled()
        assert r.reconcile(desired)  # the next resync brings it back
        assert r.workloads[aid].pid != first and r.ports()[aid]["8080"] == host
        _until(lambda: r.readiness()[0].get(aid) == "ready", "ready again")
        assert r.settled()
    finally:
        assert r.reconcile([]) or not r.workloads
    assert r.workloads == {} and not r.log_path(aid).exists()
    assert not (r.workdirs / aid).exists()


def test_a_bundle_with_an_unsafe_layer_starts_nothing_and_is_reported(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "escape").symlink_to("/etc")  # the builder bundles links as they are
    config = signed_config(_desired("sha256:" + "0" * 64, uuid.uuid4()).runtime)
    built = bundles.build(src, tmp_path / "staging", config=config)
    bundle_dir = tmp_path / "bundles"
    bundle_dir.mkdir()
    built.layout.rename(bundle_dir / built.digest.removeprefix("sha256:"))
    allocation = uuid.uuid4()
    r = Reconciler(tmp_path / "state" / "node.json", bundle_dir=bundle_dir)
    assert r.reconcile([_desired(built.digest, allocation)])
    assert r.workloads == {}
    assert r.observed() == {str(allocation): "failed"}
    assert r.failures() == {str(allocation): "layer-unsafe"}
    assert not (r.workdirs / str(allocation)).exists()  # nothing of it stays behind


# ----------------------------------------------------------------------------- with gpuaas


@pytest.fixture
def gpuaas_settings(infra, fresh_database):
    apply_migrations(fresh_database, [KIT_MIGRATIONS, ("gpuaas", "gpuaas.store.migrations")])
    return ServiceSettings(
        service_name=f"gpuaas-app-test-{uuid.uuid4().hex[:8]}",
        database_url=fresh_database,
        kafka=infra.kafka,
        operator_token="app-test-token",
        heartbeat_interval_s=0,
    )


async def _seed(db: Database, project: uuid.UUID, digest: str) -> None:
    """What gpuaas's projections hold from iam, registry and billing: the tenant's project,
    the signed release `web` 1.0.0 promoted to stable, a balance and the prices."""
    now = dt.datetime.now(dt.UTC)
    created = ProjectCreated(
        project_id=project, tenant_id=TENANT, name="Apps", slug=f"p-{project.hex[:8]}",
        created_at=now,
    )  # fmt: skip
    envelope = intoto.release_statement(digest, tenant=str(TENANT), app="web", version="1.0.0")
    blob = Blob(digest=digest, size=1, media_type="application/octet-stream")
    release = ReleaseChanged(
        tenant_id=TENANT, project_id=project, app_id=uuid.uuid4(), app="web",
        version_id=uuid.uuid4(), version="1.0.0",
        bundle=Bundle(manifest_digest=digest, media_type="m", size=1, config=blob, layers=[blob]),
        statements=[SignedStatement(
            statement_id=uuid.uuid4(), kind="release", predicate_type=intoto.RELEASE,
            envelope=envelope.sign([SIGNER]).to_json().decode(), signer_key_ids=[SIGNER.keyid],
        )],
        signers=[Signer(key_id=SIGNER.keyid, public_key=SIGNER.public.to_base64(),
                        status="active")],
        channels=["dev", "staging", "stable"], yanked=False, sequence=3, occurred_at=now,
    )  # fmt: skip
    async with db.unit_of_work() as uow:
        await project_handler()(
            new_event(type="iam.project.created", source="iam", subject=str(project),
                      payload=msgspec.json.encode(created)), uow,
        )  # fmt: skip
        await registry_handler()(
            new_event(type="registry.release.promoted", source="registry",
                      subject=str(release.version_id), payload=msgspec.json.encode(release)),
            uow,
        )  # fmt: skip
        await fund_tenant(uow, TENANT)
        await uow.commit()


async def test_a_replica_through_gpuaas_runs_turns_ready_and_a_kill_is_healed(
    gpuaas_settings, tmp_path
):
    bundle_dir, digest = _bundle_dir(tmp_path)
    project = uuid.uuid4()
    db = Database(gpuaas_settings.database_url)
    try:
        await _seed(db, project, digest)
        runtime = _desired(digest, uuid.uuid4()).runtime
        request = ReplicaRequest(
            replica_id=uuid.uuid4(), instance_id=uuid.uuid4(), tenant_id=TENANT,
            project_id=project, generation=1,
            bundle=BundleRef(tenant_id=TENANT, app="web", version="1.0.0",
                             manifest_digest=digest),
            resources=ReplicaResources(sku="h100-80gb", count=1),
            runtime=msgspec.convert(msgspec.to_builtins(runtime), Runtime),
            occurred_at=dt.datetime.now(dt.UTC),
        )  # fmt: skip
        async with AsyncTestClient(build_service_app(HTTP_ONLY, gpuaas_settings)) as gpuaas:
            name = f"node-{uuid.uuid4().hex[:6]}"
            agent = NodeAgent(
                AgentSettings(node_name=name, gpuaas_url="http://test",
                              bootstrap_token="app-test-token", state_dir=tmp_path / "agent",
                              bundle_dir=bundle_dir),
                SimulatedDiscovery(name, "h100-80gb:1"),
            )  # fmt: skip
            await agent.sync_once(gpuaas)  # registers
            async with db.unit_of_work() as uow:
                allocation = await request_replica(uow, request, GpuaasSettings(), {})
                await uow.commit()
            assert allocation is not None and allocation.state == "scheduled"
            aid = str(allocation.id)

            async def readiness() -> str | None:
                await agent.sync_once(gpuaas)
                async with db.unit_of_work() as uow:
                    row = await uow.fetch_one(
                        "SELECT state, readiness FROM allocations WHERE id = :a", {"a": aid}
                    )
                return row["readiness"] if row["state"] == "running" else None

            await _eventually(readiness, "ready")
            os.killpg(agent.reconciler.workloads[aid].pid, signal.SIGKILL)
            _until(lambda: not agent.reconciler.workloads[aid].alive(), "the process gone")
            await agent.sync_once(gpuaas)  # reports it unready; the answer restarts it
            assert agent.reconciler.workloads[aid].alive()
            await _eventually(readiness, "ready")
            async with db.unit_of_work() as uow:
                events = await uow.fetch_all(
                    "SELECT type, payload FROM outbox WHERE subject = :s ORDER BY seq",
                    {"s": aid},
                )
            kinds = [e["type"].rsplit(".", 1)[1] for e in events]
            assert kinds[-3:] == ["workload_ready", "workload_unready", "workload_ready"]
            assert "releasing" not in kinds  # the kill did not lose the allocation
            unready = events[-2]["payload"]
            unready = msgspec.json.decode(unready) if isinstance(unready, str | bytes) else unready
            assert unready["reason"] == "process_exited"
            assert unready["replica"]["replica_id"] == str(request.replica_id)
            agent.reconciler.reconcile([])
    finally:
        await db.dispose()


async def _eventually(check, want, within: float = 20.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check() == want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never {want}")


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/python3").exists(),
                    reason="per-allocation users need root and a system python")  # fmt: skip
def test_with_isolation_the_app_runs_as_its_own_user_in_its_own_tree(tmp_path):
    template = _desired("sha256:" + "0" * 64, uuid.uuid4()).runtime
    system_python = msgspec.structs.replace(
        template, command=["/usr/bin/python3", *template.command[1:]]
    )
    bundle_dir, digest = _bundle_dir(tmp_path, system_python)
    state = tmp_path / "agent"
    harden_agent(state)
    accounts = WorkloadAccounts(
        owner=f"app-test-{uuid.uuid4()}", workspace_root=state / "workspaces",
        lease_dir=tmp_path / "leases", first_uid=5_500_000,
    )  # fmt: skip
    r = Reconciler(state / "node.json", bundle_dir=bundle_dir, accounts=accounts)
    allocation = uuid.uuid4()
    aid = str(allocation)
    desired = _desired(digest, allocation)
    runtime = msgspec.structs.replace(
        desired.runtime, command=["/usr/bin/python3", *desired.runtime.command[1:]]
    )
    desired = msgspec.structs.replace(desired, runtime=runtime)
    try:
        assert r.reconcile([desired])
        account = accounts.account(aid)
        assert account is not None
        _until(lambda: r.readiness()[0].get(aid) == "ready", "ready")
        served = account.home / "health" / "ready.txt"
        assert served.stat().st_uid == account.uid  # the unpacked tree is the workload's
        status = Path(f"/proc/{r.workloads[aid].pid}/status").read_text()
        assert f"Uid:\t{account.uid}\t" in status
        assert r.log_path(aid).stat().st_uid == 0  # the log is the agent's
    finally:
        r.reconcile([])
    assert accounts.account(aid) is None and not account.home.exists()
