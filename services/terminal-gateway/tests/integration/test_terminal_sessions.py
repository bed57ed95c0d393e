"""The browser path end to end: mint through the API, connect the WebSocket with the token,
relay to the node agent's PTY, record; reattach; idle timeout; revocation by release and
by membership revocation; every refusal; the recording readable by tenant admins; a
recording that cannot be written ends the session."""

import asyncio
import hashlib
import json
import time
import uuid

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gpucloud_terminal import protocol

from .conftest import OPERATOR_TOKEN, Screen, events_of

pytestmark = pytest.mark.integration


async def _connect(minted: dict, *, subprotocol: bool = True, token: str | None = None):
    """The WebSocket of a minted session, the token as a browser sends it (a subprotocol),
    with the X-Forwarded-For the gateway sets."""
    token = token or minted["token"]
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    if subprotocol:
        return connect(
            minted["connect_url"],
            subprotocols=[protocol.SUBPROTOCOL, protocol.bearer_subprotocol(token)],
            additional_headers=forwarded,
            compression=None,
        )
    return connect(
        minted["connect_url"], additional_headers={"Authorization": f"Bearer {token}", **forwarded}
    )


async def _attach(ws) -> Screen:
    screen = Screen()
    await ws.send(protocol.resize(200, 50))
    await screen.control(ws, "attached")
    return screen


async def _closed(ws) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_open_type_resize_see_the_screen_and_read_the_recording(stack):
    t = await stack.tenant()
    user = uuid.uuid4()
    minted = await stack.open(stack.iam.token(user, t.id), t)
    assert minted.status_code == 201, minted.text
    body = minted.json()
    assert body["session"]["state"] == "minted" and body["connect_url"].startswith("ws://")
    claims = __import__("jwt").decode(body["token"], options={"verify_signature": False})
    assert claims["aud"] == "node:node-tg-test" and claims["exp"] - claims["iat"] <= 60
    assert claims["sub"] == str(user) and claims["allocation_id"] == str(t.allocation_id)

    async with await _connect(body) as ws:
        assert ws.subprotocol == protocol.SUBPROTOCOL
        screen = await _attach(ws)
        await ws.send(b'echo "he""llo $(id -u)"\n')
        await screen.until(ws, "hello 5")  # the allocation's own uid, not root
        await ws.send(protocol.resize(90, 30))
        await ws.send(b"stty size\n")
        await screen.until(ws, "30 90")
        await ws.send(b"exit 0\n")
        assert (await screen.control(ws, "exit")).get("code") == 0
        assert (await _closed(ws))[0] == 1000

    session_id = body["session"]["id"]
    closed = await stack.until(
        lambda: (
            stack.sql(
                "SELECT state, reason, recording_digest FROM sessions WHERE id = %s", session_id
            )[0][0]
            == "closed"
        ),
        what="the session closed",
    )
    assert closed
    [(state, reason, digest)] = stack.sql(
        "SELECT state, reason, recording_digest FROM sessions WHERE id = %s", session_id
    )
    assert (state, reason) == ("closed", "exited")
    types = [t for t, _ in events_of(stack, session_id)]
    assert types == [
        "terminal.session.minted",
        "terminal.session.opened",
        "terminal.session.closed",
    ]
    final = events_of(stack, session_id)[-1][1]
    assert final["client_address"] == "203.0.113.7" and final["duration_ms"] >= 0
    assert final["recording_digest"] == digest and final["user_id"] == str(user)

    admin = stack.iam.token(uuid.uuid4(), t.id, roles=("admin",))
    recording = await stack.call(
        "GET", f"/v1/terminal/tenants/{t.id}/sessions/{session_id}/recording", admin
    )
    assert recording.status_code == 200
    assert recording.headers["content-type"].startswith("application/x-asciicast")
    assert "sha256:" + hashlib.sha256(recording.content).hexdigest() == digest
    lines = recording.content.decode().splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2 and header["width"] == 80
    events = [json.loads(line) for line in lines[1:]]
    codes = {code for _, code, _ in events}
    assert codes == {"o", "i", "r"}
    assert any(code == "i" and "he" in data for _, code, data in events)
    assert any(code == "r" and data == "90x30" for _, code, data in events)
    assert any(code == "o" and "hello" in data for _, code, data in events)
    assert all(a[0] <= b[0] for a, b in zip(events, events[1:], strict=False))

    # A member who is no admin, and another tenant's admin, cannot read it.
    member = stack.iam.token(user, t.id)
    path = f"/v1/terminal/tenants/{t.id}/sessions/{session_id}/recording"
    assert (await stack.call("GET", path, member)).status_code == 403
    stranger = stack.iam.token(uuid.uuid4(), uuid.uuid4(), roles=("admin",))
    assert (await stack.call("GET", path, stranger)).status_code == 404
    assert (await stack.call("GET", path)).status_code == 401
    assert (await stack.call("GET", path, OPERATOR_TOKEN)).status_code == 200
