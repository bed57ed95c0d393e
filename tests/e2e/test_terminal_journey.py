"""architecture.md §5 step 7 through the running fleet: a tenant launches a MIG slice, opens
a browser terminal through the gateway (WebSocket relayed gateway -> terminal-gateway ->
node agent), types and sees the screen (pyte), tries to reach the node agent's secrets
and another allocation's files from that shell (and must fail: the shell runs as the
allocation's own unprivileged user), registers an SSH key in iam and runs a command over
`ssh <allocation>@<terminal-gateway>`, reads the recording as the tenant's owner, and
releases the allocation, which revokes the session."""

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import pyte
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gpucloud_terminal import protocol

from .conftest import bearer, sign_up
from .conftest import idempotency_key as _key

pytestmark = pytest.mark.e2e
PASSWORD = "terminal-" + uuid.uuid4().hex + "Aa1!"


def _until(what: str, probe: Callable[[], Any], within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:g} s")
        time.sleep(0.2)


def _pay(gateway, auth, tenant_id: str, micros: int = 50_000_000) -> None:
    """A sandbox payment, settled (billing opens the tenant from iam's event: retried)."""
    key = _key()
    path = f"/v1/billing/tenants/{tenant_id}/payments"

    def pay() -> dict[str, Any] | None:
        r = gateway.post(path, json={"amount_micros": micros}, headers=auth | key)
        return r.json() if r.status_code in (200, 201) else None

    payment = _until("payment accepted", pay)
    _until(
        "payment settled",
        lambda: gateway.get(f"{path}/{payment['id']}", headers=auth).json()["status"] == "settled",
    )


def _launch(gateway, auth, tenant_id: str, project_id: str) -> dict[str, Any]:
    path = f"/v1/gpu/tenants/{tenant_id}/projects/{project_id}/allocations"
    body = {"sku": "h100-80gb", "mig_profile": "1g.10gb"}

    def attempt() -> str | None:
        # 402 until gpuaas has seen the payment, 404 until it has projected the project
        # from iam's event: a new intent (key) each time.
        r = gateway.post(path, json=body, headers=auth | _key())
        if r.status_code in (402, 404):
            return None
        assert r.status_code == 201, r.text
        return r.json()["id"]

    allocation_id = _until("launch accepted", attempt)

    def running() -> dict[str, Any] | None:
        body = gateway.get(f"{path}/{allocation_id}", headers=auth).json()
        return body if body.get("state") == "running" else None

    return _until("the allocation runs", running)


async def _screen_until(ws, screen: pyte.Screen, stream: pyte.ByteStream, needle: str) -> str:
    async with asyncio.timeout(15):
        while True:
            text = "\n".join(line.rstrip() for line in screen.display)
            if needle in text:
                return text
            frame = await ws.recv()
            if isinstance(frame, bytes):
                stream.feed(frame)


def test_a_terminal_on_a_running_allocation_through_the_fleet(fleet, gateway):
    from devstack.fleet import load
    from devstack.paths import pids_dir, state_dir

    signed_up, owner = sign_up(gateway, "terminal", PASSWORD)
    tenant_id, project_id = signed_up["tenant"]["id"], signed_up["project"]["id"]
    auth = bearer(owner.enroll(gateway, tenant_id))
    _pay(gateway, auth, tenant_id)
    mine = _launch(gateway, auth, tenant_id, project_id)
    theirs = _launch(gateway, auth, tenant_id, project_id)

    def mint() -> dict[str, Any] | None:
        r = gateway.post(
            "/v1/terminal/sessions", json={"allocation_id": mine["id"]}, headers=auth | _key()
        )
        assert r.status_code in (201, 404, 503), r.text  # 404/503: projections catching up
        return r.json() if r.status_code == 201 else None

    minted = _until("terminal-gateway knows the allocation", mint)
    assert minted["connect_url"].startswith(fleet.gateway.replace("http://", "ws://"))

    nodes = {
        n["id"]: n["name"] for n in gateway.get("/v1/gpu/nodes", headers=fleet.operator).json()
    }
    node = nodes[mine["node_id"]]
    agent_pid = int((pids_dir() / f"{node}.pid").read_text())
    workspaces = state_dir() / "node-agent" / "workspaces"
    their_home = workspaces / nodes[theirs["node_id"]] / theirs["id"]
    probes = {
        "environ": f"/proc/{agent_pid}/environ",
        "state": str(state_dir() / "node-agent" / f"{node}.json"),
        "secrets": str(state_dir() / "secrets.json"),
        "theirs": str(their_home),
    }
    assert Path(probes["environ"]).exists() and Path(probes["state"]).exists()

    async def browser() -> str:
        screen = pyte.Screen(200, 50)
        stream = pyte.ByteStream(screen)
        async with connect(
            minted["connect_url"],
            subprotocols=[protocol.SUBPROTOCOL, protocol.bearer_subprotocol(minted["token"])],
        ) as ws:
            await ws.send(protocol.resize(200, 50))
            await ws.send(b'echo "i am $(id -u) in $PWD"\n')
            await _screen_until(ws, screen, stream, "i am ")
            for name, path in probes.items():
                verb = "ls" if name == "theirs" else "cat"
                await ws.send(f'{verb} {path} >/dev/null 2>&1; echo "{name}""=$?"\n'.encode())
                await _screen_until(ws, screen, stream, f"{name}=")
            return "\n".join(line.rstrip() for line in screen.display)

    shown = asyncio.run(browser())
    assert "i am 0 " not in shown, shown  # not root
    for name in probes:
        assert f"{name}=0" not in shown, f"the shell reached {name}:\n{shown}"
        assert f"{name}=1" in shown or f"{name}=2" in shown, shown

    # SSH with a key registered in iam.
    key = asyncssh.generate_private_key("ssh-ed25519")
    added = gateway.post(
        "/v1/iam/me/ssh-keys",
        json={"public_key": key.export_public_key().decode(), "name": "e2e"},
        headers=auth,
    )
    assert added.status_code == 201, added.text
    assert added.json()["fingerprint"] == key.get_fingerprint("sha256")
    ssh_port = next(s.ssh_port for s in load().services if s.name == "terminal-gateway")

    async def ssh() -> asyncssh.SSHCompletedProcess:
        deadline = time.monotonic() + 20
        while True:  # until terminal-gateway has projected the key
            try:
                async with asyncssh.connect(
                    "127.0.0.1", ssh_port, username=mine["id"], client_keys=[key],
                    known_hosts=None, agent_path=None,
                ) as conn:  # fmt: skip
                    return await conn.run("echo over ssh; exit 4", check=False)
            except asyncssh.PermissionDenied:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)

    result = asyncio.run(ssh())
    assert (result.stdout, result.exit_status) == ("over ssh\n", 4)

    # The owner reads the browser session's recording; its digest is the session's.
    sessions = f"/v1/terminal/tenants/{tenant_id}/sessions"
    browser_session = _until(
        "the browser session detached",
        lambda: next(
            (s for s in gateway.get(sessions, headers=auth).json()
             if s["id"] == minted["session"]["id"] and s["state"] == "detached"),
            None,
        ),
    )  # fmt: skip
    assert browser_session["client_address"]
    recording = gateway.get(f"{sessions}/{browser_session['id']}/recording", headers=auth)
    assert recording.status_code == 200
    lines = recording.content.decode().splitlines()
    assert json.loads(lines[0])["version"] == 2
    assert any("environ=" in json.loads(line)[2] for line in lines[1:])

    # Releasing the allocation revokes the (detached) session; the final digest matches.
    released = gateway.post(
        f"/v1/gpu/tenants/{tenant_id}/projects/{project_id}/allocations/{mine['id']}/release",
        headers=auth | _key(),
    )
    assert released.status_code == 202, released.text

    def revoked() -> dict[str, Any] | None:
        path = f"/v1/terminal/sessions/{browser_session['id']}"
        body = gateway.get(path, headers=auth).json()
        return body if body["state"] == "revoked" else None

    final = _until("the session revoked", revoked)
    assert final["reason"] == "allocation_released"
    recording = gateway.get(f"{sessions}/{browser_session['id']}/recording", headers=auth)
    assert final["recording_digest"] == "sha256:" + hashlib.sha256(recording.content).hexdigest()


def test_a_refused_terminal_socket_through_the_gateway(fleet, gateway):
    """The gateway passes terminal-gateway's refusal close codes through."""

    async def refused() -> int:
        url = (
            fleet.gateway.replace("http://", "ws://")
            + f"/v1/terminal/sessions/{uuid.uuid4()}/connect"
        )
        async with connect(url) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
        return closed.value.rcvd.code

    assert asyncio.run(refused()) == protocol.UNAUTHORIZED
