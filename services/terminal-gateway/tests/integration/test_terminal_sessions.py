"""The browser path end to end: mint through the API, connect the WebSocket with the token,
relay to the node agent's PTY, record; reattach; idle timeout; revocation by release and
by membership revocation; every refusal; the recording readable by tenant admins; a
recording that cannot be written ends the session."""

import asyncio
import datetime as dt
import hashlib
import itertools
import json
import time
import uuid

import httpx
import psycopg
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gpucloud_contracts.events.gpuaas import AllocationChanged, ReplicaOwner
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
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(events))

    # A member who is no admin, and another tenant's admin, cannot read it.
    member = stack.iam.token(user, t.id)
    path = f"/v1/terminal/tenants/{t.id}/sessions/{session_id}/recording"
    assert (await stack.call("GET", path, member)).status_code == 403
    stranger = stack.iam.token(uuid.uuid4(), uuid.uuid4(), roles=("admin",))
    assert (await stack.call("GET", path, stranger)).status_code == 404
    assert (await stack.call("GET", path)).status_code == 401
    assert (await stack.call("GET", path, OPERATOR_TOKEN)).status_code == 200


async def test_a_dropped_socket_detaches_and_a_reattach_replays_the_screen(stack):
    t = await stack.tenant()
    user = uuid.uuid4()
    token = stack.iam.token(user, t.id)
    body = (await stack.open(token, t)).json()
    session_id = body["session"]["id"]
    async with await _connect(body) as ws:
        screen = await _attach(ws)
        await ws.send(b'K=kept; echo "before ""the drop"\n')
        await screen.until(ws, "before the drop")
    await stack.until(
        lambda: (
            stack.sql("SELECT state FROM sessions WHERE id = %s", session_id)[0][0] == "detached"
        ),
        what="detached",
    )
    # The old token is spent; a fresh one comes from the attach route, for this user only.
    async with await _connect(body) as ws:
        assert (await _closed(ws))[0] == protocol.UNAUTHORIZED
    other = stack.iam.token(uuid.uuid4(), t.id)
    refused = await stack.call("POST", f"/v1/terminal/sessions/{session_id}/attach", other)
    assert refused.status_code == 404
    again = await stack.call("POST", f"/v1/terminal/sessions/{session_id}/attach", token)
    assert again.status_code == 201, again.text
    async with await _connect(again.json()) as ws:
        screen = Screen()
        await ws.send(protocol.resize(200, 50))
        attached = await screen.control(ws, "attached")
        assert attached.get("resumed") is True
        await screen.until(ws, "before the drop")  # replayed from the node's scrollback
        await ws.send(b'echo "still $K"\n')
        await screen.until(ws, "still kept")
        await ws.send(protocol.encode("close"))  # end it for good, not a detach
        assert (await screen.control(ws, "closing")).get("reason") == "closed"
    await stack.until(
        lambda: (
            stack.sql("SELECT state, reason FROM sessions WHERE id = %s", session_id)[0]
            == ("closed", "closed")
        ),
        what="closed",
    )
    types = [t for t, _ in events_of(stack, session_id)]
    assert types == [
        "terminal.session.minted", "terminal.session.opened", "terminal.session.detached",
        "terminal.session.opened", "terminal.session.closed",
    ]  # fmt: skip
    assert events_of(stack, session_id)[3][1]["attachments"] == 2


async def test_an_idle_session_is_closed_with_a_message(stack, monkeypatch):
    import dataclasses

    monkeypatch.setattr(
        stack.service, "settings", dataclasses.replace(stack.service.settings, idle_timeout_s=1)
    )
    t = await stack.tenant()
    body = (await stack.open(stack.iam.token(uuid.uuid4(), t.id), t)).json()
    async with await _connect(body) as ws:
        screen = await _attach(ws)
        closing = await screen.control(ws, "closing", within=8)
        assert closing.get("reason") == "idle_timeout" and "no input" in closing.get("message")
        assert (await _closed(ws))[0] == 1000
    session_id = body["session"]["id"]
    await stack.until(
        lambda: (
            stack.sql("SELECT state, reason FROM sessions WHERE id = %s", session_id)[0]
            == ("closed", "idle_timeout")
        ),
        what="closed by the idle timeout",
    )


async def _revoked_within(stack, ws, screen: Screen, reason: str) -> float:
    started = time.monotonic()
    closing = await screen.control(ws, "closing", within=5)
    elapsed = time.monotonic() - started
    assert closing.get("reason") == reason and closing.get("message")
    await _closed(ws)
    return elapsed


async def test_releasing_the_allocation_revokes_its_session_within_2_s(stack):
    t = await stack.tenant()
    body = (await stack.open(stack.iam.token(uuid.uuid4(), t.id), t)).json()
    async with await _connect(body) as ws:
        screen = await _attach(ws)
        await ws.send(b'echo "rea""dy"\n')
        await screen.until(ws, "ready")
        started = time.monotonic()
        await stack.allocation(t.id, t.project_id, t.allocation_id, state="releasing")
        await _revoked_within(stack, ws, screen, "allocation_released")
        elapsed = time.monotonic() - started
    print(f"release -> session closed: {elapsed:.3f} s")
    assert elapsed < 2.0
    session_id = body["session"]["id"]
    await stack.until(
        lambda: (
            stack.sql("SELECT state, reason FROM sessions WHERE id = %s", session_id)[0]
            == ("revoked", "allocation_released")
        ),
        what="revoked",
    )
    await stack.until(
        lambda: (
            not any(
                s.allocation_id == str(t.allocation_id)
                for s in stack.agent_terminal.sessions.values()
            )
        ),
        what="the shell ended at the node",
    )
    # And no new session on it.
    again = await stack.open(stack.iam.token(uuid.uuid4(), t.id), t)
    assert again.status_code == 409


async def test_workload_readiness_events_keep_the_session_and_the_allocation_running(stack):
    """An app replica's allocation reports readiness on gpuaas.allocation.v1
    (`workload_ready`, `workload_unready`, state still `running`): applied, not
    dead-lettered, and no session of the allocation is revoked."""
    t = await stack.tenant()
    body = (await stack.open(stack.iam.token(uuid.uuid4(), t.id), t)).json()
    async with await _connect(body) as ws:
        screen = await _attach(ws)
        published = []
        for kind in ("workload_unready", "workload_ready"):
            published.append(await stack.publish(
                "gpuaas.allocation.v1", f"gpuaas.allocation.{kind}", t.allocation_id,
                AllocationChanged(
                    allocation_id=t.allocation_id, tenant_id=t.id, project_id=t.project_id,
                    state="running", previous_state="running",
                    reason="process_exited" if kind == "workload_unready" else None,
                    sku="h100-80gb", quantity=1, node_id=stack.node_id,
                    replica=ReplicaOwner(replica_id=uuid.uuid4(), instance_id=uuid.uuid4()),
                    occurred_at=dt.datetime.now(dt.UTC),
                ),
                t.id,
            ))  # fmt: skip
        await stack.until(
            # by id: the fleet's own app replicas publish readiness events on the same topic
            lambda: (
                stack.sql(
                    "SELECT count(*) FROM inbox WHERE consumer = 'allocations'"
                    " AND event_id = ANY(%s::uuid[])",
                    published,
                )[0][0]
                == 2
            ),
            what="the readiness events applied",
        )
        await ws.send(b'echo "sti""ll here"\n')
        await screen.until(ws, "still here")
    session_id = body["session"]["id"]
    assert stack.sql("SELECT state FROM sessions WHERE id = %s", session_id)[0][0] != "revoked"
    assert stack.sql("SELECT state FROM allocations WHERE id = %s", t.allocation_id) == [
        ("running",)
    ]


async def test_revoking_the_membership_revokes_the_session_within_2_s(stack):
    t = await stack.tenant()
    user = uuid.uuid4()
    membership = await stack.membership(t.id, user, "member")
    body = (await stack.open(stack.iam.token(user, t.id), t)).json()
    async with await _connect(body) as ws:
        screen = await _attach(ws)
        started = time.monotonic()
        await stack.membership(t.id, user, "member", membership, revoked=True)
        await _revoked_within(stack, ws, screen, "membership_revoked")
        elapsed = time.monotonic() - started
    print(f"membership revoked -> session closed: {elapsed:.3f} s")
    assert elapsed < 2.0
    # The same token no longer mints a session either.
    refused = await stack.open(stack.iam.token(user, t.id), t)
    assert refused.status_code == 403


async def test_suspending_the_tenant_revokes_its_sessions_within_2_s(stack):
    t = await stack.tenant()
    user = uuid.uuid4()
    open_body = (await stack.open(stack.iam.token(user, t.id), t)).json()
    minted_only = (await stack.open(stack.iam.token(user, t.id), t)).json()
    async with await _connect(open_body) as ws:
        screen = await _attach(ws)
        started = time.monotonic()
        await stack.suspend(t.id)
        await _revoked_within(stack, ws, screen, "tenant_suspended")
        elapsed = time.monotonic() - started
    print(f"tenant suspended -> session closed: {elapsed:.3f} s")
    assert elapsed < 2.0
    for body in (open_body, minted_only):  # the open one once its recording is flushed
        await stack.until(
            lambda id=body["session"]["id"]: (
                stack.sql("SELECT state, reason FROM sessions WHERE id = %s", id)[0]
                == ("revoked", "tenant_suspended")
            ),
            what="revoked",
        )
    # The unused token of the minted session opens nothing now, and nothing new is minted.
    async with await _connect(minted_only) as ws:
        code, _ = await _closed(ws)
    assert code == 4409
    assert (await stack.open(stack.iam.token(user, t.id), t)).status_code == 403


async def test_a_tenant_admin_kills_a_session_and_a_detached_one_ends_at_the_node(stack):
    t = await stack.tenant()
    user = uuid.uuid4()
    body = (await stack.open(stack.iam.token(user, t.id), t)).json()
    session_id = body["session"]["id"]
    async with await _connect(body) as ws:
        await _attach(ws)
    await stack.until(
        lambda: (
            stack.sql("SELECT state FROM sessions WHERE id = %s", session_id)[0][0] == "detached"
        ),
        what="detached",
    )
    assert any(s.id == session_id for s in stack.agent_terminal.sessions.values())
    path = f"/v1/terminal/tenants/{t.id}/sessions/{session_id}/revoke"
    assert (await stack.call("POST", path, stack.iam.token(user, t.id))).status_code == 403
    admin = stack.iam.token(uuid.uuid4(), t.id, roles=("admin",))
    assert (await stack.call("POST", path, admin)).status_code == 202
    assert stack.sql("SELECT state, reason FROM sessions WHERE id = %s", session_id)[0] == (
        "revoked",
        "killed",
    )
    await stack.until(
        lambda: not any(s.id == session_id for s in stack.agent_terminal.sessions.values()),
        within=6, what="the detached shell ended at the node",
    )  # fmt: skip
    listed = await stack.call("GET", f"/v1/terminal/tenants/{t.id}/sessions", admin)
    assert [s["id"] for s in listed.json()] == [session_id]
    assert (await stack.call("POST", path, admin)).status_code == 409


class TestRefusals:
    """Every way of not getting a shell."""

    async def test_no_token_an_expired_one_another_tenant_and_a_viewer(self, stack):
        t = await stack.tenant()
        assert (
            await stack.call(
                "POST", "/v1/terminal/sessions", json={"allocation_id": str(t.allocation_id)}
            )
        ).status_code == 401
        expired = stack.iam.token(
            uuid.uuid4(), t.id, iat=1_700_000_000, exp=1_700_000_300, nbf=1_700_000_000
        )
        assert (await stack.open(expired, t)).status_code == 401
        stranger = stack.iam.token(uuid.uuid4(), uuid.uuid4(), roles=("owner",))
        assert (await stack.open(stranger, t)).status_code == 404
        viewer = stack.iam.token(uuid.uuid4(), t.id, roles=("viewer",))
        assert (await stack.open(viewer, t)).status_code == 403
        project_viewer = stack.iam.token(
            uuid.uuid4(), t.id, roles=(), proj={t.project_id: ("viewer",)}
        )
        assert (await stack.open(project_viewer, t)).status_code == 403
        project_member = stack.iam.token(
            uuid.uuid4(), t.id, roles=(), proj={t.project_id: ("member",)}
        )
        assert (await stack.open(project_member, t)).status_code == 201
        service_account = stack.iam.token(
            uuid.uuid4(), t.id, roles=(), proj={t.project_id: ("admin",)}, kind="service_account"
        )
        assert (await stack.open(service_account, t)).status_code == 403
        assert (await stack.open(OPERATOR_TOKEN, t)).status_code == 403
        missing = await stack.call(
            "POST", "/v1/terminal/sessions", stack.iam.token(uuid.uuid4(), t.id),
            json={"allocation_id": str(uuid.uuid4())},
        )  # fmt: skip
        assert missing.status_code == 404

    async def test_mfa_required_but_absent(self, stack):
        t = await stack.tenant()
        owner = stack.iam.token(uuid.uuid4(), t.id, roles=("owner",), mfa=True)
        policy = f"/v1/terminal/tenants/{t.id}/policy"
        no_mfa = stack.iam.token(uuid.uuid4(), t.id, roles=("owner",))
        assert (
            await stack.call("PUT", policy, no_mfa, json={"require_mfa": True})
        ).status_code == 401
        assert (
            await stack.call("PUT", policy, owner, json={"require_mfa": True})
        ).status_code == 200
        assert (await stack.call("GET", policy, owner)).json() == {"require_mfa": True}
        refused = await stack.open(stack.iam.token(uuid.uuid4(), t.id), t)
        assert refused.status_code == 401
        assert "insufficient_user_authentication" in refused.headers["www-authenticate"]
        assert (
            await stack.open(stack.iam.token(uuid.uuid4(), t.id, mfa=True), t)
        ).status_code == 201

    async def test_replayed_superseded_foreign_and_other_node_tokens(self, stack):
        t, other = await stack.tenant(), await stack.tenant()
        user = uuid.uuid4()
        body = (await stack.open(stack.iam.token(user, t.id), t)).json()
        elsewhere = (await stack.open(stack.iam.token(user, other.id), other)).json()
        # another allocation's token on this session's connect URL
        async with await _connect(body, token=elsewhere["token"]) as ws:
            assert (await _closed(ws))[0] == protocol.NOT_FOUND
        # a token for another node (signed by terminal-gateway's own key, aud node:elsewhere)
        forged = stack.service.keys.sign(
            {**__import__("jwt").decode(body["token"], options={"verify_signature": False}),
             "aud": "node:another-node"},
            "terminal+jwt",
        )  # fmt: skip
        async with await _connect(body, token=forged) as ws:
            assert (await _closed(ws))[0] == protocol.UNAUTHORIZED
        async with await _connect(body, token="not-a-jwt") as ws:
            assert (await _closed(ws))[0] == protocol.UNAUTHORIZED
        async with connect(body["connect_url"]) as ws:  # no token at all
            assert (await _closed(ws))[0] == protocol.UNAUTHORIZED
        async with await _connect(body, subprotocol=False) as ws:  # the real one, once
            await _attach(ws)
        async with await _connect(body) as ws:  # replayed
            assert (await _closed(ws))[0] == protocol.UNAUTHORIZED
        # a connect token is valid for 60 s at most, then the minted session expires
        unused = (await stack.open(stack.iam.token(user, t.id), t)).json()
        stack.sql(
            "UPDATE sessions SET token_expires_at = now() - interval '1 minute' WHERE id = %s",
            unused["session"]["id"],
        )
        await stack.until(
            lambda: (
                stack.sql(
                    "SELECT state, reason FROM sessions WHERE id = %s", unused["session"]["id"]
                )[0]
                == ("expired", "token_unused")
            ),
            what="expired",
        )


async def test_a_recording_that_cannot_be_written_ends_the_session(stack):
    t = await stack.tenant()
    body = (await stack.open(stack.iam.token(uuid.uuid4(), t.id), t)).json()
    session_id = body["session"]["id"]
    # PostgreSQL refuses this session's chunks once its header is stored (a full disk, a
    # revoked grant ... would look the same to the relay).
    stack.sql(
        "CREATE OR REPLACE FUNCTION refuse_recording() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN IF NEW.session_id = '" + session_id + "' AND NEW.seq > 0 THEN"
        " RAISE EXCEPTION 'disk full'; END IF; RETURN NEW; END $$"
    )
    stack.sql(
        "CREATE OR REPLACE TRIGGER refuse_recording BEFORE INSERT ON recording_chunks"
        " FOR EACH ROW EXECUTE FUNCTION refuse_recording()"
    )
    try:
        async with await _connect(body) as ws:
            screen = await _attach(ws)
            await asyncio.sleep(0.3)  # the header chunk goes in
            await ws.send(b"echo unrecorded\n")
            closing = await screen.control(ws, "closing", within=5)
            assert closing.get("reason") == "recording_failed"
            await _closed(ws)
    finally:
        stack.sql("DROP TRIGGER refuse_recording ON recording_chunks")
    await stack.until(
        lambda: (
            stack.sql("SELECT state, reason FROM sessions WHERE id = %s", session_id)[0]
            == ("closed", "recording_failed")
        ),
        what="closed for the recording",
    )
    await stack.until(
        lambda: not any(s.id == session_id for s in stack.agent_terminal.sessions.values()),
        what="the shell ended at the node",
    )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE recording_chunks SET data = ''",
        "DELETE FROM recording_chunks",
        "TRUNCATE recording_chunks CASCADE",
        "DELETE FROM sessions",
        "DELETE FROM signing_keys",
        "ALTER TABLE recording_chunks ADD COLUMN x int",
    ],
)
async def test_the_runtime_role_cannot_rewrite_recordings_or_drop_sessions(stack, statement):
    """terminal-gateway serves as its runtime role (the stack migrates as the owner)."""
    with psycopg.connect(stack.runtime_database) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


async def test_an_idempotency_key_gives_the_same_session_with_a_fresh_token_until_opened(stack):
    """The key's stored answer is the session (never its token): a retry gets the same
    session and a new token, which replaces the first; another body is a 422; once the
    session was opened the key answers 409."""
    t = await stack.tenant()
    token = stack.iam.token(uuid.uuid4(), t.id)
    key = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}

    async def mint(allocation_id) -> httpx.Response:
        async with httpx.AsyncClient(base_url=stack.base, timeout=10) as client:
            body = {"allocation_id": str(allocation_id)}
            return await client.post("/v1/terminal/sessions", json=body, headers=key)

    first, again = (await mint(t.allocation_id)).json(), (await mint(t.allocation_id)).json()
    assert again["session"]["id"] == first["session"]["id"] and again["token"] != first["token"]
    assert (await mint(uuid.uuid4())).status_code == 422
    async with await _connect(first) as ws:  # replaced by the retry's token
        assert (await _closed(ws))[0] == protocol.UNAUTHORIZED
    async with await _connect(again) as ws:
        await _attach(ws)
        assert (await mint(t.allocation_id)).status_code == 409
    stored = stack.sql("SELECT response_body FROM idempotency_keys")
    assert all(first["token"].encode() not in bytes(body) for (body,) in stored)


async def test_closing_the_recorder_during_a_slow_flush_keeps_what_that_flush_carried(stack):
    """The chaos run found a session that closed cleanly with no recording: closing the
    recorder cancelled its flush in flight, and the bytes that flush had taken were lost.
    Here the table is locked so the flush waits, the recorder is closed meanwhile, then the
    lock goes: every byte is stored."""
    from terminal_gateway.app.recording import Recorder

    t = await stack.tenant()
    session_id = uuid.UUID((await stack.open(stack.iam.token(uuid.uuid4(), t.id), t)).json()[
        "session"
    ]["id"])  # fmt: skip
    recorder = Recorder(stack.service.db, session_id, dt.datetime.now(dt.UTC))
    await recorder.start(80, 24, "slow flush")
    recorder.output(b"kept through the close\r\n")
    with psycopg.connect(stack.database) as blocker:
        blocker.execute("LOCK TABLE recording_chunks IN EXCLUSIVE MODE")
        await asyncio.sleep(0.6)  # the periodic flush has started and waits for the lock
        closing = asyncio.create_task(recorder.close())
        await asyncio.sleep(0.3)
        assert not closing.done()  # it waits for the flush in flight
        blocker.commit()
        await asyncio.wait_for(closing, 10)
    stored = b"".join(
        bytes(c)
        for (c,) in stack.sql(
            "SELECT data FROM recording_chunks WHERE session_id = %s ORDER BY seq", session_id
        )
    )
    assert b"kept through the close" in stored and b'"version"' in stored[:20]
    assert recorder.written == len(stored)
