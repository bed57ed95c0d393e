"""run_with_reattach against a real WebSocket server on a loopback socket that plays a
terminal endpoint: drops, refused tries, endings, flow control."""

import asyncio
import contextlib

import pytest
from websockets.asyncio.server import ServerConnection, serve

from gpucloud_terminal import protocol
from gpucloud_terminal.client import Connection, run_with_reattach
from gpucloud_terminal.protocol import Control, Reattach

FAST = Reattach(give_up_after_s=1.0, first_delay_s=0.01, max_delay_s=0.05)


@contextlib.asynccontextmanager
async def endpoint(script):
    """A server running `script(ws, n)` for its n-th connection (from 0)."""
    count = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal count
        n, count = count, count + 1
        await script(ws, n)

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/connect"


def drop(ws: ServerConnection) -> None:
    ws.transport.abort()  # no close frame: the network went away


async def test_a_drop_reattaches_with_a_fresh_token_and_the_exit_ends_it():
    tokens, seen, headers = iter(["t1", "t2"]), [], []

    async def script(ws, n):
        headers.append(ws.request.headers["Authorization"])
        await ws.send(protocol.encode("attached", session_id="s", resumed=n > 0))
        await ws.send(f"output {n}".encode())
        if n == 0:
            drop(ws)
            return
        assert await ws.recv() == b"typed"
        await ws.send(protocol.encode("exit", code=3))
        await ws.send(protocol.encode("closing", reason="exited", message="bye"))
        await ws.close()

    async with endpoint(script) as url:

        async def attach():
            return url, next(tokens)

        async def pump(connection: Connection) -> None:
            await connection.send(b"typed")

        async def on_frame(frame):
            seen.append(frame if isinstance(frame, bytes) else frame.type)

        ended = await run_with_reattach(attach, on_frame, policy=FAST, pump=pump)
    assert headers == ["Bearer t1", "Bearer t2"]
    assert seen == ["attached", b"output 0", "attached", b"output 1", "exit", "closing"]
    assert ended.attachments == 2 and ended.exit_code == 3 and not ended.gave_up
    assert ended.closing == Control("closing", {"reason": "exited", "message": "bye"})


async def test_failed_tries_wait_and_retry_and_a_final_reason_stops():
    failures = [OSError("refused"), TimeoutError()]
    drops: list[float] = []

    async def script(ws, n):
        await ws.send(protocol.encode("attached", session_id="s"))
        await ws.send(protocol.encode("closing", reason="allocation_released"))
        await ws.close()

    async with endpoint(script) as url:

        async def attach():
            if failures:
                raise failures.pop(0)
            return url, "t"

        async def on_drop(delay):
            drops.append(delay)

        ended = await run_with_reattach(attach, _ignore, policy=FAST, on_drop=on_drop)
    assert drops == [0.01, 0.02]  # two failed tries, then one connection that ended
    assert ended.closing.get("reason") == "allocation_released" and not ended.gave_up


async def test_it_gives_up_once_the_grace_window_is_spent():
    async def script(ws, n):
        drop(ws)

    async with endpoint(script) as url:

        async def attach():
            return url, "t"

        policy = Reattach(give_up_after_s=0.05, first_delay_s=0.01, max_delay_s=0.02)
        ended = await run_with_reattach(attach, _ignore, policy=policy)
    assert ended.gave_up and ended.attachments == 0


async def test_a_refusal_is_not_retried_and_other_errors_propagate():
    async def script(ws, n):
        await ws.close(protocol.FORBIDDEN, "not yours")

    async with endpoint(script) as url:
        calls = []

        async def attach():
            calls.append(1)
            return url, "t"

        ended = await run_with_reattach(attach, _ignore, policy=FAST)
        assert calls == [1] and ended.connection.close_code == protocol.FORBIDDEN

        async def refused():
            raise LookupError("the session cannot be reattached")

        with pytest.raises(LookupError):
            await run_with_reattach(refused, _ignore, policy=FAST)


async def test_drawn_output_releases_flow_control():
    """A frame over the high watermark pauses the server; once on_frame has drawn it, the
    client resumes it."""
    said = []

    async def script(ws, n):
        await ws.send(protocol.encode("attached", session_id="s"))
        for _ in range(3):
            await ws.send(b"x" * 60_000)
        said.append(await asyncio.wait_for(ws.recv(), 5))
        said.append(await asyncio.wait_for(ws.recv(), 5))
        await ws.close()

    async with endpoint(script) as url:

        async def attach():
            return url, "t"

        await run_with_reattach(
            attach, _ignore, policy=FAST,
            flow=lambda: protocol.FlowControl(high=50_000, low=10_000),
        )  # fmt: skip
    assert [protocol.decode(m).type for m in said] == ["pause", "resume"]


async def _ignore(frame) -> None:
    return None
