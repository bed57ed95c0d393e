"""The gateway streams bodies both ways: a bundle layer goes to registry as it arrives
(with or without a Content-Length), every other route keeps the kit's 1 MiB limit (413
problem+json before anything reaches the upstream), an upstream that answers before reading
the body (a blob it already has) still reaches a client that writes its whole body first,
and a long or endless answer (a followed log) reaches the client chunk by chunk. Both apps run
over uvicorn on real sockets."""

import asyncio
import hashlib
import http.client
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, get, post, put
from litestar.response import Stream

from gateway.bootstrap import build_app

from .test_websocket_proxy import _serve

MiB = 1024 * 1024
BLOB = "/v1/registry/tenants/t/projects/p/apps/a/blobs/sha256:" + "ab" * 32
reached: list[str] = []
release_slow = asyncio.Event()


@put("/v1/registry/tenants/{t:str}/projects/{p:str}/apps/{a:str}/blobs/{d:str}",
     request_max_body_size=None)  # fmt: skip
async def upload(request: Request[Any, Any, Any], d: str) -> dict[str, Any]:
    reached.append("upload")
    if request.headers.get("x-already-stored"):
        return {"read": False}  # answers without reading the body, as registry does
    digest, size = hashlib.sha256(), 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest(), "length": request.headers.get("content-length")}  # fmt: skip  # noqa: E501


@post("/v1/registry/echo", request_max_body_size=None)
async def echo(request: Request[Any, Any, Any]) -> dict[str, int]:
    reached.append("echo")
    return {"size": len(await request.body())}


@get("/v1/registry/big")
async def big() -> Stream:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(48):
            yield bytes([i]) * 65536

    return Stream(chunks())  # 3 MiB, no Content-Length


@get("/v1/registry/slow")
async def slow() -> Stream:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first line\n"
        await asyncio.wait_for(release_slow.wait(), 10)  # until the client has the first
        yield b"second line\n"

    return Stream(chunks())


@pytest.fixture
async def gateway(monkeypatch) -> AsyncIterator[str]:
    reached.clear()
    release_slow.clear()
    upstream = await _serve(Litestar([upload, echo, big, slow]))
    monkeypatch.setenv(
        "GPUCLOUD_UPSTREAMS", f"registry=http://127.0.0.1:{upstream[2].getsockname()[1]}"
    )
    monkeypatch.setenv("GPUCLOUD_GATEWAY_MAX_UPLOAD_BYTES", str(8 * MiB))
    edge = await _serve(build_app())
    yield f"http://127.0.0.1:{edge[2].getsockname()[1]}"
    for server, task, sock in (edge, upstream):
        server.should_exit = True
        await task
        sock.close()


def _payload(size: int) -> bytes:
    return os.urandom(size)


async def test_a_blob_upload_streams_through_with_its_length(gateway):
    data = _payload(5 * MiB)
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        answer = await client.put(BLOB, content=data)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "length": str(len(data)),
    }  # fmt: skip


async def test_a_blob_upload_of_unknown_length_streams_through(gateway):
    data = _payload(3 * MiB + 7)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 100_000):
            yield data[i : i + 100_000]

    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        answer = await client.put(BLOB, content=chunks())
    assert answer.status_code == 200, answer.text
    assert answer.json()["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_over_the_limit_is_refused_with_413(gateway, chunked):
    data = _payload(2 * MiB)  # other routes: 1 MiB

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        answer = await client.post("/v1/registry/echo", content=chunks() if chunked else data)
        small = await client.post("/v1/registry/echo", content=b"x" * 1000)
    assert answer.status_code == 413, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["type"].endswith("/body-too-large")
    if not chunked:
        assert reached == ["echo"]  # only the small one: the declared length was refused first
    assert small.json() == {"size": 1000}


async def test_an_upload_over_its_own_limit_is_refused(gateway):
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        answer = await client.put(BLOB, content=_payload(9 * MiB))  # limit here: 8 MiB
    assert answer.status_code == 413, answer.text
    assert reached == []


async def test_an_early_answer_reaches_a_client_that_writes_its_whole_body_first(gateway):
    host, port = gateway.removeprefix("http://").split(":")

    def put_whole_body() -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("PUT", BLOB, body=_payload(4 * MiB), headers={"x-already-stored": "1"})
        answer = connection.getresponse()
        return answer.status, answer.read()

    status, body = await asyncio.to_thread(put_whole_body)
    assert (status, body) == (200, b'{"read":false}')


async def test_a_long_answer_streams_whole(gateway):
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        answer = await client.get("/v1/registry/big")
    assert answer.status_code == 200
    assert answer.content == b"".join(bytes([i]) * 65536 for i in range(48))


async def test_an_answer_reaches_the_client_as_the_upstream_sends_it(gateway):
    async with (
        httpx.AsyncClient(base_url=gateway, timeout=30) as client,
        client.stream("GET", "/v1/registry/slow") as answer,
    ):
        lines = answer.aiter_lines()
        # the upstream holds its second line until this first one has come through
        assert await asyncio.wait_for(anext(lines), 10) == "first line"
        release_slow.set()
        assert await asyncio.wait_for(anext(lines), 10) == "second line"
