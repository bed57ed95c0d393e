"""The PTY stream over a real socket: the agent app served by uvicorn, terminal-gateway's
JWKS served by a tiny HTTP server with a locally generated Ed25519 key, a WebSocket client
speaking the documented framing. No Kafka or PostgreSQL is involved."""

import asyncio
import dataclasses
import json
import os
import socket
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from litestar import Litestar
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from node_agent.bootstrap import DEFINITION
from node_agent.mig import simulated_mig_uuid
from node_agent.reconcile import Reconciler
from node_agent.session_tokens import SessionTokenVerifier
from node_agent.terminal import TerminalService, TerminalSettings
from platformkit.http import build_service_app
from platformkit.settings import ServiceSettings

NODE = "node-pty"
SLEEP = f"{sys.executable} -c 'import time; time.sleep(600)'"


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
    r = Reconciler(tmp_path / "state.json", SLEEP)
    yield r
    r.reconcile([])


@pytest.fixture
async def agent(
    jwks_url: str, reconciler: Reconciler, tmp_path: Path
) -> AsyncIterator[tuple[str, TerminalService]]:
    """The agent's HTTP app (its real route set) over uvicorn on a free port."""
    service = TerminalService(
        TerminalSettings(jwks_url=jwks_url, shell_path="/bin/sh"),
        SessionTokenVerifier.from_jwks_url(jwks_url, node_name=NODE),
        reconciler,
        tmp_path / "workspaces",
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
    server.should_exit = True
    await task
    sock.close()


def _url(base: str, allocation_id: str) -> str:
    return f"{base}/v1/node/allocations/{allocation_id}/terminal"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _read_until(ws: ClientConnection, needle: bytes, seen: bytearray) -> None:
    while needle not in seen:
        frame = await asyncio.wait_for(ws.recv(), 10)
        assert isinstance(frame, bytes), "terminal output comes as binary frames"
        seen += frame


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


async def test_a_shell_in_the_allocation_round_trip(
    agent, reconciler, signer, monkeypatch, desired
):
    base, service = agent
    monkeypatch.setenv("GPUCLOUD_OPERATOR_TOKEN", "agent-secret")  # must not reach the shell
    aid = str(uuid.uuid4())
    reconciler.reconcile([desired(aid, ("GPU-pty", 0, 19))])
    token = signer.token(NODE, aid)

    async with connect(_url(base, aid), additional_headers=_bearer(token)) as ws:
        seen = bytearray()
        # The quotes keep the typed (echoed) line from matching what the command prints.
        await ws.send(b'echo hel""lo\n')
        await _read_until(ws, b"hello\r\n", seen)
        await ws.send(b'echo "dev=$CUDA_VISIBLE_DEVICES tok=[$GPUCLOUD_OPERATOR_TOKEN]"\n')
        await _read_until(ws, f"dev={simulated_mig_uuid('GPU-pty', 0, 19)} tok=[]".encode(), seen)

        await ws.send(json.dumps({"type": "resize", "cols": 120, "rows": 40}))
        await ws.send(b"stty size\n")
        await _read_until(ws, b"40 120\r\n", seen)

        [pty] = service.sessions.values()
        pid = pty.pid
        await ws.send(b"sleep 600 &\n")  # a child in the shell's process group
    assert await _pid_gone(pid), "the shell outlived the disconnect"
    assert service.sessions == {}


async def test_the_session_ends_when_the_shell_exits(agent, reconciler, signer, desired):
    base, _ = agent
    aid = str(uuid.uuid4())
    reconciler.reconcile([desired(aid, ("GPU-pty", 0, 19))])
    async with connect(_url(base, aid), additional_headers=_bearer(signer.token(NODE, aid))) as ws:
        await ws.send(b"exit\n")
        code, _ = await _closed_with(ws)
    assert code == 1000


async def test_the_session_ends_when_the_allocation_is_released(agent, reconciler, signer, desired):
    base, service = agent
    aid = str(uuid.uuid4())
    reconciler.reconcile([desired(aid, ("GPU-pty", 0, 19))])
    async with connect(_url(base, aid), additional_headers=_bearer(signer.token(NODE, aid))) as ws:
        await ws.send(b'echo rea""dy\n')
        await _read_until(ws, b"ready\r\n", bytearray())
        [pty] = service.sessions.values()
        reconciler.reconcile([])
        code, reason = await _closed_with(ws)
    assert (code, reason) == (1008, "the allocation is no longer running")
    assert await _pid_gone(pty.pid)


REFUSALS = {
    "no token": lambda s, aid: None,
    "not a jwt": lambda s, aid: "garbage",
    "expired": lambda s, aid: s.token(NODE, aid, iat=1_700_000_000, exp=1_700_000_060),
    "wrong audience": lambda s, aid: s.token(NODE, aid, aud="gpucloud"),
    "another node": lambda s, aid: s.token("node-other", aid),
    "another allocation": lambda s, aid: s.token(NODE, str(uuid.uuid4())),
    "an iam access token": lambda s, aid: s.token(NODE, aid, typ="at+jwt"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
async def test_refused_callers_get_no_shell(agent, reconciler, signer, case, desired):
    base, service = agent
    aid = str(uuid.uuid4())
    reconciler.reconcile([desired(aid, ("GPU-pty", 0, 19))])
    token = REFUSALS[case](signer, aid)
    headers = _bearer(token) if token else {}
    async with connect(_url(base, aid), additional_headers=headers) as ws:
        code, reason = await _closed_with(ws)
    assert code == 1008 and reason
    assert service.sessions == {}


async def test_a_replayed_token_is_refused(agent, reconciler, signer, desired):
    base, _ = agent
    aid = str(uuid.uuid4())
    reconciler.reconcile([desired(aid, ("GPU-pty", 0, 19))])
    token = signer.token(NODE, aid)
    async with connect(_url(base, aid), additional_headers=_bearer(token)) as ws:
        await ws.send(b"exit\n")
        assert (await _closed_with(ws))[0] == 1000
    async with connect(_url(base, aid), additional_headers=_bearer(token)) as ws:
        assert await _closed_with(ws) == (1008, "the session token was already used")


async def test_an_allocation_not_running_here_is_refused(agent, signer):
    base, service = agent
    aid = str(uuid.uuid4())  # valid token, but the node never ran this allocation
    async with connect(_url(base, aid), additional_headers=_bearer(signer.token(NODE, aid))) as ws:
        assert await _closed_with(ws) == (1008, "the allocation is not running on this node")
    assert service.sessions == {}
