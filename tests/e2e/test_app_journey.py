"""An app developer's and a user's journey on the running fleet (issue 14), through the
gateway with iam's real tokens: `gpucloud app init|publish|promote` a tiny HTTP app (the
CLI in-process), launch it as an instance, watch it reach ready (the node agent pulled the
bundle, verified it, ran the signed command and probed it), reach the app through its
connect URL, kill its process on the node and see it healed, stop it and see its allocation
released and its usage billed. Refusals: another tenant's instance URL 404, a viewer cannot
launch, no token 401."""

from __future__ import annotations

import json
import os
import signal
import uuid
from typing import Any

import httpx
import pytest

from gpucloud_cli.main import cli as gpucloud_main

from .conftest import Person, bearer, gpuaas_sees_balance, invite, sign_up, until
from .test_cli import Cli

pytestmark = pytest.mark.e2e
PASSWORD = "apps-" + uuid.uuid4().hex + "Aa1!"


@pytest.fixture(scope="module")
def developer(fleet, tmp_path_factory) -> dict[str, Any]:
    with fleet.client() as gateway:
        body, owner = sign_up(gateway, "apps", PASSWORD)
        owner.activate_totp(gateway, body["tenant"]["slug"])
        tenant, project = body["tenant"]["id"], body["project"]["id"]
    cli = Cli(tmp_path_factory.mktemp("apps-cli"), fleet.gateway)
    cli("login", "--email", owner.email, input=f"{PASSWORD}\n{owner.next_code()}\n")
    return {"cli": cli, "owner": owner, "tenant": tenant, "project": project}


def _token(developer) -> dict[str, str]:
    return bearer(developer["cli"].session().access_token)


def _instance(gateway: httpx.Client, developer, instance_id: str) -> dict[str, Any]:
    path = (
        f"/v1/apps/tenants/{developer['tenant']}/projects/{developer['project']}"
        f"/instances/{instance_id}"
    )
    answer = gateway.get(path, headers=_token(developer))
    assert answer.status_code == 200, answer.text
    return answer.json()


def _agent_workload(allocation_id: str) -> dict[str, Any] | None:
    """The node agent's own record of a workload (its state file), as an operator on the node
    would find the process."""
    from devstack.paths import state_dir

    for path in (state_dir() / "node-agent").glob("node-agent-*.json"):
        for w in json.loads(path.read_text()).get("workloads", []):
            if w["allocation_id"] == allocation_id:
                return w
    return None


def test_publish_launch_reach_heal_stop_and_bill(fleet, gateway, developer, tmp_path):
    cli: Cli = developer["cli"]

    def billing_knows() -> bool:
        return cli.runner.invoke(gpucloud_main, ["balance", "--json"], env=cli.env).exit_code == 0

    until("billing knows the tenant", billing_knows)
    assert cli.json("top-up", "5.00", "-y")["payment"]["status"] == "settled"
    # gpuaas's money gate fails closed: the replica launches once it has seen the top-up.
    until("gpuaas sees the top-up", gpuaas_sees_balance(fleet, developer["tenant"], 5_000_000))

    folder = tmp_path / "hello"
    cli.json("app", "init", "hello", "--dir", str(folder))
    key = tmp_path / "publisher.key"
    cli.json("app", "key", "create", "--out", str(key))
    published = cli.json("app", "publish", str(folder), "--key", str(key))
    for channel in ("dev", "staging", "stable"):
        cli.json("app", "promote", "hello", "0.1.0", "--to", channel)

    # appplatform's catalog learns the release from registry's events
    def in_catalog():
        items = gateway.get(
            "/v1/apps/catalog", params={"q": "hello"}, headers=_token(developer)
        ).json()["items"]
        return any(i["app"] == "hello" and i["channels"] for i in items)

    until("the catalog shows hello", in_catalog, within=30, every=0.5)
    launched = cli.json("app", "launch", "hello", "--wait", "--timeout", "120")
    instance = launched["instance"]
    assert instance["status"]["state"] == "ready", instance
    assert instance["spec"]["manifest_digest"] == published["digest"]

    # the app answers through the gateway with the caller's own token; not without one
    url = cli.json("app", "open", "hello")["url"]
    answer = httpx.get(url, headers=_token(developer), timeout=15)
    assert answer.status_code == 200 and answer.text == "hello", answer.text
    assert httpx.get(url, timeout=15).status_code == 401

    # its logs through the CLI: the example server logs each request it served (stderr)
    def logged() -> str:
        result = cli.runner.invoke(gpucloud_main, ["app", "logs", "hello"], env=cli.env)
        assert result.exit_code == 0, result.output
        return "GET /healthz" in result.output and result.output

    until("the replica's requests in `gpucloud app logs`", logged, within=20)

    # another tenant cannot reach it (404, not 403: ids cannot be probed)
    with fleet.client() as other:
        stranger_body, stranger = sign_up(other, "stranger", PASSWORD)
        token = stranger.sign_in(other, stranger_body["tenant"]["id"])
    assert httpx.get(url, headers=bearer(token), timeout=15).status_code == 404

    # kill the workload's process on its node: the agent starts it again, the URL answers
    [replica] = instance["status"]["replicas"]
    allocation_id = replica["allocation_id"]
    workload = _agent_workload(allocation_id)
    assert workload is not None and workload["app"]
    os.killpg(workload["pid"], signal.SIGKILL)

    def healed():
        again = _agent_workload(allocation_id)
        if again is None or again["pid"] == workload["pid"]:
            return False
        return httpx.get(url, headers=_token(developer), timeout=5).status_code == 200

    until("the agent restarts the killed app", healed, within=60, every=0.5)

    # stop: the replica's allocation is released, and what it ran is billed
    stopped = cli.json("app", "stop", "hello")["instance"]
    assert stopped["spec"]["desired_state"] == "stopped"

    def released():
        got = _instance(gateway, developer, instance["id"])
        return got if got["status"]["state"] == "stopped" else None

    until("the instance stopped", released, within=60, every=0.5)
    allocation = gateway.get(
        f"/v1/gpu/tenants/{developer['tenant']}/projects/{developer['project']}"
        f"/allocations/{allocation_id}",
        headers=_token(developer),
    ).json()
    assert allocation["state"] == "released"
    assert allocation["replica_id"] == replica["replica_id"]

    def billed():
        usage = gateway.get(
            f"/v1/billing/tenants/{developer['tenant']}/usage", headers=_token(developer)
        ).json()
        return any(
            u["project_id"] == developer["project"] and u["charged_micros"] > 0
            for u in usage["items"]
        )

    until("the replica's usage is rated", billed, within=60, every=1.0)


def test_refusals(fleet, gateway, developer):
    base = f"/v1/apps/tenants/{developer['tenant']}/projects/{developer['project']}"
    assert gateway.get(f"{base}/instances").status_code == 401
    # a viewer of the tenant reads instances but cannot launch
    with fleet.client() as g:
        viewer = Person("viewer", PASSWORD)
        invite(g, f"/v1/iam/tenants/{developer['tenant']}", viewer, "viewer", _token(developer))
        token = viewer.sign_in(g, developer["tenant"])
    assert gateway.get(f"{base}/instances", headers=bearer(token)).status_code == 200
    refused = gateway.post(
        f"{base}/apps/hello/instances",
        json={"name": "by-a-viewer"},
        headers=bearer(token) | {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert refused.status_code == 403, refused.text


def test_bundle_build_sign_verify_push_promote_step_by_step(fleet, gateway, developer, tmp_path):
    """`gpucloud bundle`: the private key stays here; verify checks what a node checks, and
    names the first failure; push is idempotent."""
    from gpucloud_trust import bundle as bundles
    from gpucloud_trust.keys import SigningKey

    cli: Cli = developer["cli"]
    folder, layout = tmp_path / "steps", tmp_path / "layout"
    cli.json("app", "init", "steps", "--dir", str(folder))
    # a layer over the 1 MiB every other route takes: it streams through the gateway
    (folder / "weights.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    built = cli.json("bundle", "build", str(folder), "--out", str(layout))
    assert built["size"] > 3 * 1024 * 1024
    assert (built["app"], built["version"], built["signatures"]) == ("steps", "0.1.0", 0)
    again = cli.json("bundle", "build", str(folder), "--out", str(tmp_path / "again"))
    assert again["digest"] == built["digest"]  # deterministic: same tree, same digest

    signer, stranger = SigningKey.generate(), SigningKey.generate()
    key, stranger_key = tmp_path / "publisher.key", tmp_path / "stranger.key"
    public, stranger_public = signer.save(key), stranger.save(stranger_key)
    refused = cli.error("bundle", "verify", str(layout), "--public-key", str(public), expect=12)
    assert refused["reason"] == "unsigned"
    signed = cli.json("bundle", "sign", str(layout), "--key", str(key))
    assert (signed["key_id"], signed["signatures"]) == (signer.keyid, 1)
    assert cli.json("bundle", "sign", str(layout), "--key", str(key))["signatures"] == 1
    verified = cli.json("bundle", "verify", str(layout), "--public-key", str(public))
    assert verified["verified"] and verified["signer_key_ids"] == [signer.keyid]
    wrong = cli.error(
        "bundle", "verify", str(layout), "--public-key", str(stranger_public), expect=12
    )
    assert wrong["reason"] == "untrusted"

    # one byte of the layer changed: the blob's digest no longer matches the manifest
    [layer] = bundles.load_layout(layout).layers
    blob = bundles.blob_path(layout, layer.digest)
    original = blob.read_bytes()
    blob.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    tampered = cli.error("bundle", "verify", str(layout), "--public-key", str(public), expect=12)
    assert tampered["reason"] == "blob-digest"
    blob.write_bytes(original)

    # against the keys registry trusts: not yet, then once the tenant trusts the key
    untrusted = cli.error("bundle", "verify", str(layout), expect=12)
    assert untrusted["reason"] == "untrusted"
    with fleet.client() as g:
        token = developer["owner"].sign_in(g, developer["tenant"])  # a fresh second factor
        trusted = g.post(
            f"/v1/registry/tenants/{developer['tenant']}/keys",
            json={"public_key": signer.public.to_pem(), "name": "steps"},
            headers=bearer(token) | {"Idempotency-Key": uuid.uuid4().hex},
        )
    assert trusted.status_code == 201, trusted.text
    assert cli.json("bundle", "verify", str(layout))["signer_key_ids"] == [signer.keyid]

    pushed = cli.json("bundle", "push", str(layout))
    assert (pushed["digest"], pushed["signatures_attached"]) == (built["digest"], 1)
    assert pushed["blobs_uploaded"] == built["blobs"]
    repushed = cli.json("bundle", "push", str(layout))
    assert repushed["blobs_uploaded"] == 0 and repushed["app_created"] is False
    promoted = cli.json("bundle", "promote", "steps", "0.1.0", "--to", "dev")
    assert "dev" in promoted["release"]["channels"]
    skipped = cli.error("bundle", "promote", "steps", "0.1.0", "--to", "stable", expect=6)
    assert skipped["status"] == 409
