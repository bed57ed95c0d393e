"""The gateway relays WebSockets: the upgrade reaches the owning service with its token,
offered subprotocols and the client's address, frames pass one by one both ways (an
upstream that waits for each answer before it sends again only works unbuffered), and the
upstream's close code and reason come back. Both apps run over uvicorn on real sockets."""

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from litestar import Litestar, WebSocket, websocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.bootstrap import build_app


@websocket("/v1/echo/{rest:path}")
async def upstream(socket: WebSocket[Any, Any, Any], rest: str) -> None:
    offered = list(socket.scope.get("subprotocols") or [])
    await socket.accept(subprotocols="proto.v1" if "proto.v1" in offered else None)
    await socket.send_text(
        f"auth={socket.headers.get('authorization')} xff={socket.headers.get('x-forwarded-for')}"
        f" path={rest} query={socket.scope.get('query_string', b'').decode()}"
        f" offered={','.join(offered)}"
    )
    # Ping-pong: the next frame goes out only after the answer to the last came back.
    for i in range(50):
        await socket.send_bytes(bytes([i]) * 1000)
        answer = await socket.receive_bytes()
        assert answer == bytes([i]) * 1000
    await socket.close(4410, "upstream says goodbye")


async def _serve(app: Litestar) -> tuple[uvicorn.Server, asyncio.Task[None], socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
        await asyncio.sleep(0.01)
    return server, task, sock


@pytest.fixture
async def gateway(monkeypatch) -> AsyncIterator[str]:
    echo = await _serve(Litestar([upstream]))
    monkeypatch.setenv("GPUCLOUD_UPSTREAMS", f"echo=http://127.0.0.1:{echo[2].getsockname()[1]}")
    edge = await _serve(build_app())
    yield f"ws://127.0.0.1:{edge[2].getsockname()[1]}"
    for server, task, sock in (edge, echo):
        server.should_exit = True
        await task
        sock.close()


async def test_frames_pass_one_by_one_with_the_upgrade_headers(gateway):
    async with connect(
        f"{gateway}/v1/echo/sessions/abc/connect?x=1",
        additional_headers={"Authorization": "Bearer t0ken"},
        subprotocols=["proto.v1", "bearer.secret"],
    ) as ws:
        assert ws.subprotocol == "proto.v1"
        hello = await ws.recv()
        # the address the gateway saw goes upstream as X-Forwarded-For
        assert hello == (
            "auth=Bearer t0ken xff=127.0.0.1 path=/sessions/abc/connect query=x=1"
            " offered=proto.v1,bearer.secret"
        )
        for i in range(50):
            frame = await asyncio.wait_for(ws.recv(), 5)
            assert frame == bytes([i]) * 1000
            await ws.send(frame)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4410, "upstream says goodbye")


async def test_an_unknown_route_is_closed_with_4404(gateway):
    async with connect(f"{gateway}/v1/nowhere/x") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd.code == 4404
