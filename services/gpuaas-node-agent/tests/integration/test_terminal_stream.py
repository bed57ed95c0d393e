"""The PTY stream over a real socket: the agent app served by uvicorn, terminal-gateway's
JWKS served by a tiny HTTP server with a locally generated Ed25519 key, a WebSocket client
speaking gpucloud_terminal's protocol, pyte as the screen. Workloads and shells run as
per-allocation users (the tests run as root, as the agent does). No Kafka or PostgreSQL."""

import asyncio
import dataclasses
import json
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyte
import pytest
import uvicorn
from litestar import Litestar
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gpucloud_contracts.node_sync import DesiredAllocation, InstanceOut
from gpucloud_terminal import protocol
from node_agent.bootstrap import DEFINITION
from node_agent.isolation import WorkloadAccounts, harden_agent
from node_agent.mig import simulated_mig_uuid
from node_agent.reconcile import Reconciler
from node_agent.session_tokens import SessionTokenVerifier
from node_agent.terminal import TerminalService, TerminalSettings
from platformkit.http import build_service_app
from platformkit.settings import ServiceSettings

NODE = "node-pty"
SLEEP = "exec sleep 600"
TEST_FIRST_UID = 5_000_000  # apart from the devstack agents' range (isolation.py)


@pytest.fixture
def jwks_url(signer) -> Iterator[str]:
    document = json.dumps(signer.jwks()).encode()

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()
    server.server_close()


@pytest.fixture
def reconciler(tmp_path: Path) -> Iterator[Reconciler]:
    state = tmp_path / "state"
    umask = os.umask(0o022)
    os.umask(umask)
    harden_agent(state)  # as the agent does at start: its own files private
    accounts = WorkloadAccounts(
        owner=f"test-{uuid.uuid4()}",
        workspace_root=state / "workspaces",
        lease_dir=tmp_path / "leases",
        first_uid=TEST_FIRST_UID,
    )
    r = Reconciler(state / "state.json", SLEEP, accounts=accounts)
    yield r
    r.reconcile([])
    os.umask(umask)


def _desired(allocation_id: str, start: int = 0) -> DesiredAllocation:
    instance = InstanceOut(
        gpu_index=0, device_uuid="GPU-pty", start=start, memory_slices=1, compute_slices=1,
        profile_id=19,
    )  # fmt: skip
    return DesiredAllocation(
        id=uuid.UUID(allocation_id), sku="h100-80gb", mig_profile="1g.10gb", state="running",
        instances=[instance],
    )  # fmt: skip


@pytest.fixture
async def agent(
    jwks_url: str, reconciler: Reconciler, tmp_path: Path
) -> AsyncIterator[tuple[str, TerminalService]]:
    """The agent's HTTP app (its real route set) over uvicorn on a free port."""
    service = TerminalService(
        TerminalSettings(jwks_url=jwks_url, shell_path="/bin/bash", default_grace_s=30),
        SessionTokenVerifier.from_jwks_url(jwks_url, node_name=NODE),
        reconciler,
        tmp_path / "unused",
    )

    async def install(app: Litestar) -> None:
        app.state.terminal = service  # the sync loop against gpuaas is not needed here

    definition = dataclasses.replace(DEFINITION, on_startup=[install], on_shutdown=(), jobs=())
    app = build_service_app(definition, ServiceSettings(service_name=f"agent-{NODE}"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
        await asyncio.sleep(0.01)
    yield f"ws://127.0.0.1:{sock.getsockname()[1]}", service
    await service.close_all()
    server.should_exit = True
    await task
    sock.close()


def _url(base: str, allocation_id: str, what: str = "terminal") -> str:
    return f"{base}/v1/node/allocations/{allocation_id}/{what}"


class Screen:
    """What a user sees: pyte's emulation of the bytes that came in."""

    def __init__(self, cols: int = 200, rows: int = 50) -> None:
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.controls: list[protocol.Control] = []

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    async def until(self, ws: ClientConnection, needle: str, within: float = 10) -> None:
        try:
            async with asyncio.timeout(within):
                while needle not in self.text():
                    frame = await ws.recv()
                    if isinstance(frame, bytes):
                        self.stream.feed(frame)
                    else:
                        self.controls.append(protocol.decode(frame))
        except TimeoutError:
            raise AssertionError(
                f"{needle!r} never appeared on the screen:\n{self.text()}"
            ) from None

    async def control(
        self, ws: ClientConnection, kind: str, within: float = 10
    ) -> protocol.Control:
        async with asyncio.timeout(within):
            while True:
                for c in self.controls:
                    if c.type == kind:
                        return c
                frame = await ws.recv()
                if isinstance(frame, bytes):
                    self.stream.feed(frame)
                else:
                    self.controls.append(protocol.decode(frame))


async def _attach(ws: ClientConnection) -> tuple[Screen, protocol.Control]:
    """The screen of a fresh attachment (the PTY sized like it) and its `attached`."""
    screen = Screen()
    await ws.send(protocol.resize(200, 50))
    return screen, await screen.control(ws, "attached")


async def _eventually(condition, within: float = 5.0) -> bool:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polls the agent's state
            await asyncio.sleep(0.02)
    return True


async def _pid_gone(pid: int) -> bool:
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        await asyncio.sleep(0.025)
    return False


async def _closed_with(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


def _running(reconciler: Reconciler, *allocations: str) -> None:
    reconciler.reconcile([_desired(a, start=i) for i, a in enumerate(allocations)])


async def test_a_shell_runs_as_the_allocations_own_user(agent, reconciler, signer, monkeypatch):
    base, service = agent
    monkeypatch.setenv("GPUCLOUD_OPERATOR_TOKEN", "agent-secret")  # must not reach the shell
    aid = str(uuid.uuid4())
    _running(reconciler, aid)
    account = reconciler.accounts.account(aid)
    assert account is not None and account.uid >= TEST_FIRST_UID

    async with connect(_url(base, aid), additional_headers=signer.headers(NODE, aid)) as ws:
        screen, attached = await _attach(ws)
        assert attached.get("resumed") is False
        # The quotes keep the typed (echoed) line from matching what the command prints.
        await ws.send(b'echo "uid=$(id -u) home=$PWD tok=[$GPUCLOUD_OPERATOR_TOKEN]"\n')
        await screen.until(ws, f"uid={account.uid} home={account.home} tok=[]")
        await ws.send(b'echo "de""v=$CUDA_VISIBLE_DEVICES"\n')
        await screen.until(ws, f"dev={simulated_mig_uuid('GPU-pty', 0, 19)}")

        await ws.send(protocol.resize(120, 40))
        await ws.send(b"stty size\n")
        await screen.until(ws, "40 120")
    # The workload itself runs as that user too.
    workload = reconciler.workloads[aid]
    assert os.stat(f"/proc/{workload.pid}").st_uid == account.uid
    assert len(service.sessions) == 1  # detached, kept for its grace window


async def test_a_shell_cannot_reach_the_agents_secrets_or_another_allocation(
    agent, reconciler, signer
):
    base, _ = agent
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    _running(reconciler, mine, theirs)
    other = reconciler.accounts.account(theirs)
    (other.home / "weights.bin").write_text("the other tenant's data")
    os.chown(other.home / "weights.bin", other.uid, other.gid)
    (other.home / "weights.bin").chmod(0o644)  # even a world-readable file inside stays out
    probes = {
        "environ": f"/proc/{os.getpid()}/environ",
        "state": str(reconciler.state_file),
        "other": str(other.home / "weights.bin"),
        "list": str(other.home),
    }
    assert reconciler.state_file.stat().st_mode & 0o077 == 0
    async with connect(_url(base, mine), additional_headers=signer.headers(NODE, mine)) as ws:
        screen, _ = await _attach(ws)
        for name, path in probes.items():
            command = "ls" if name == "list" else "cat"
            await ws.send(f'{command} {path} >/dev/null 2>&1; echo "{name}""=$?"\n'.encode())
            await screen.until(ws, f"{name}=")
        await ws.send(b'kill -0 1 2>/dev/null; echo "sig""=$?"\n')
        await screen.until(ws, "sig=")
    shown = screen.text()
    for name in (*probes, "sig"):
        assert f"{name}=0" not in shown, f"the shell could reach {name}: {shown}"
        assert f"{name}=1" in shown or f"{name}=2" in shown


async def test_a_dropped_socket_detaches_and_a_reattach_replays_the_screen(
    agent, reconciler, signer
):
    base, service = agent
    aid, sid, user, tenant = (str(uuid.uuid4()) for _ in range(4))
    _running(reconciler, aid)
    claims = {"sid": sid, "sub": user, "tenant": tenant}
    async with connect(
        _url(base, aid), additional_headers=signer.headers(NODE, aid, **claims)
    ) as ws:
        screen, _ = await _attach(ws)
        await ws.send(b'X=1; echo "before ""drop"\n')
        await screen.until(ws, "before drop")
    [session] = service.sessions.values()
    assert await _eventually(lambda: session.attachment is None)

    async with connect(
        _url(base, aid), additional_headers=signer.headers(NODE, aid, **claims)
    ) as ws:
        replayed, attached = await _attach(ws)
        assert attached.get("resumed") is True and attached.get("replay") > 0
        await replayed.until(ws, "before drop")  # the screen as it was, from the ring
        await ws.send(b'echo "same shell X=$X"\n')  # the shell's state survived
        await replayed.until(ws, "same shell X=1")
    assert list(service.sessions.values()) == [session]

    # Someone else cannot take the session over, even with a valid token of their own.
    stranger = signer.headers(NODE, aid, sid=sid, tenant=tenant)
    async with connect(_url(base, aid), additional_headers=stranger) as ws:
        assert await _closed_with(ws) == (1008, "the session belongs to another user")


async def test_a_second_connection_takes_the_session_over(agent, reconciler, signer):
    base, _ = agent
    aid, sid, user, tenant = (str(uuid.uuid4()) for _ in range(4))
    _running(reconciler, aid)
    claims = {"sid": sid, "sub": user, "tenant": tenant}
    async with connect(
        _url(base, aid), additional_headers=signer.headers(NODE, aid, **claims)
    ) as old:
        old_screen = Screen()
        await old_screen.control(old, "attached")
        async with connect(
            _url(base, aid), additional_headers=signer.headers(NODE, aid, **claims)
        ) as new:
            assert (await old_screen.control(old, "closing")).get("reason") == "taken_over"
            screen = Screen()
            await screen.control(new, "attached")
            await new.send(b'echo "ne""w"\n')
            await screen.until(new, "new")


async def test_a_detached_session_ends_after_its_grace_window(agent, reconciler, signer):
    base, service = agent
    aid = str(uuid.uuid4())
    _running(reconciler, aid)
    async with connect(
        _url(base, aid), additional_headers=signer.headers(NODE, aid, grace_s=1)
    ) as ws:
        await Screen().control(ws, "attached")
        [session] = service.sessions.values()
        await ws.send(b"sleep 600 &\n")  # a job in its own process group goes too
        await asyncio.sleep(0.2)
    assert await _pid_gone(session.pid)
    assert await _eventually(lambda: service.sessions == {})


async def test_an_idle_session_is_closed_with_a_message(agent, reconciler, signer):
    base, service = agent
    aid = str(uuid.uuid4())
    _running(reconciler, aid)
    async with connect(
        _url(base, aid), additional_headers=signer.headers(NODE, aid, idle_s=1)
    ) as ws:
        screen = Screen()
        closing = await screen.control(ws, "closing", within=5)
        assert closing.get("reason") == "idle_timeout" and "no input" in closing.get("message")
        code, _ = await _closed_with(ws)
    assert code == 1000 and await _eventually(lambda: service.sessions == {})


async def test_terminate_ends_the_session_at_once(agent, reconciler, signer):
    base, service = agent
    aid = str(uuid.uuid4())
    _running(reconciler, aid)
    async with connect(_url(base, aid), additional_headers=signer.headers(NODE, aid)) as ws:
        await Screen().control(ws, "attached")
        [session] = service.sessions.values()
        await ws.send(protocol.encode("terminate", reason="revoked", message="access revoked"))
        code, _ = await _closed_with(ws)
    assert code == 1000
    assert await _pid_gone(session.pid) and await _eventually(lambda: service.sessions == {})


async def test_the_session_ends_when_the_shell_exits(agent, reconciler, signer, desired):
    base, _ = agent
    aid = str(uuid.uuid4())
    _running(reconciler, aid)
    async with connect(_url(base, aid), additional_headers=signer.headers(NODE, aid)) as ws:
        screen, _ = await _attach(ws)
        await ws.send(b"exit 3\n")
        assert (await screen.control(ws, "exit")).get("code") == 3
        code, _ = await _closed_with(ws)
    assert code == 1000


async def test_the_session_ends_when_the_allocation_is_released(agent, reconciler, signer, desired):
    base, service = agent
    aid = str(uuid.uuid4())
    _running(reconciler, aid)
    async with connect(_url(base, aid), additional_headers=signer.headers(NODE, aid)) as ws:
        screen, _ = await _attach(ws)
        [session] = service.sessions.values()
        reconciler.reconcile([])
        assert (await screen.control(ws, "closing")).get("reason") == "allocation_released"
        code, _ = await _closed_with(ws)
    assert code == 1008
    assert await _pid_gone(session.pid)


async def test_exec_without_a_pty_keeps_stdout_and_stderr_apart(agent, reconciler, signer):
    base, _ = agent
    aid = str(uuid.uuid4())
    _running(reconciler, aid)
    headers = signer.headers(NODE, aid, mode="exec", cmd="cat; echo oops >&2; exit 5", pty=False)
    streams: dict[int, bytes] = {1: b"", 2: b""}
    async with connect(_url(base, aid), additional_headers=headers) as ws:
        await ws.send(b"\x00binary\r\n-safe")
        await ws.send(protocol.encode("eof"))
        exit_code = None
        async with asyncio.timeout(10):
            async for frame in ws:
                if isinstance(frame, bytes):
                    stream, data = protocol.split_exec_frame(frame)
                    streams[stream] += data
                elif (control := protocol.decode(frame)).type == "exit":
                    exit_code = control.get("code")
    assert streams == {1: b"\x00binary\r\n-safe", 2: b"oops\n"}
    assert exit_code == 5


async def test_forwarding_reaches_only_a_port_the_allocation_listens_on(agent, reconciler, signer):
    base, _ = agent
    aid = str(uuid.uuid4())
    _running(reconciler, aid)
    account = reconciler.accounts.account(aid)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    echo = subprocess.Popen(  # noqa: ASYNC220 - the allocation's own echo server
        ["/usr/bin/python3", "-c", _ECHO_SERVER, str(port)],
        user=account.uid, group=account.gid, extra_groups=[], cwd=account.home,
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert echo.stdout is not None and echo.stdout.readline() == b"ready\n"
        headers = signer.headers(NODE, aid, mode="forward", port=port)
        async with connect(_url(base, aid, "forward"), additional_headers=headers) as ws:
            await ws.send(b"ping")
            assert await asyncio.wait_for(ws.recv(), 5) == b"ping"
    finally:
        echo.kill()
        echo.wait()
    # A port of another user (this test process, root) is refused.
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        headers = signer.headers(NODE, aid, mode="forward", port=foreign.getsockname()[1])
        async with connect(_url(base, aid, "forward"), additional_headers=headers) as ws:
            code, reason = await _closed_with(ws)
    assert code == 1008 and "no process of the allocation listens" in reason


_ECHO_SERVER = """
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
print("ready", flush=True)
c, _ = s.accept()
while data := c.recv(65536):
    c.sendall(data)
"""


def _refusals(signer, aid: str) -> dict[str, dict[str, str]]:
    token = signer.token(NODE, aid)
    return {
        "no token": {},
        "not a jwt": {"Authorization": "Bearer garbage"},
        "no relay assertion": {"Authorization": f"Bearer {token}"},
        "relay for another token": {
            "Authorization": f"Bearer {token}",
            "X-Terminal-Relay": signer.relay(NODE, signer.token(NODE, aid)),
        },
        "expired": signer.headers(NODE, aid, iat=1_700_000_000, exp=1_700_000_060),
        "wrong audience": signer.headers(NODE, aid, aud="gpucloud"),
        "another node": signer.headers("node-other", aid),
        "another allocation": signer.headers(NODE, str(uuid.uuid4())),
        "an iam access token": signer.headers(NODE, aid, typ="at+jwt"),
        "a forward token": signer.headers(NODE, aid, mode="forward", port=22),
    }


@pytest.mark.parametrize(
    "case",
    [
        "no token", "not a jwt", "no relay assertion", "relay for another token", "expired",
        "wrong audience", "another node", "another allocation", "an iam access token",
        "a forward token",
    ],
)  # fmt: skip
async def test_refused_callers_get_no_shell(agent, reconciler, signer, case):
    base, service = agent
    aid = str(uuid.uuid4())
    _running(reconciler, aid)
    async with connect(_url(base, aid), additional_headers=_refusals(signer, aid)[case]) as ws:
        code, reason = await _closed_with(ws)
    assert code == 1008 and reason
    assert service.sessions == {}


async def test_a_replayed_token_is_refused(agent, reconciler, signer, desired):
    base, _ = agent
    aid = str(uuid.uuid4())
    _running(reconciler, aid)
    headers = signer.headers(NODE, aid)
    async with connect(_url(base, aid), additional_headers=headers) as ws:
        await ws.send(b"exit\n")
        assert (await _closed_with(ws))[0] == 1000
    async with connect(_url(base, aid), additional_headers=headers) as ws:
        assert await _closed_with(ws) == (1008, "the session token was already used")


async def test_an_allocation_not_running_here_is_refused(agent, signer):
    base, service = agent
    aid = str(uuid.uuid4())  # valid token, but the node never ran this allocation
    async with connect(_url(base, aid), additional_headers=signer.headers(NODE, aid)) as ws:
        assert await _closed_with(ws) == (1008, "the allocation is not running on this node")
    assert service.sessions == {}
