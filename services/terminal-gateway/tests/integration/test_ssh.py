"""`ssh <allocation>@<terminal-gateway>` with a key registered in iam (its event projected),
relayed to the same node agent PTY stream as the browser: a command on pipes (stdout,
stderr, exit status apart), an interactive shell with window changes, a local port
forward; an unregistered key gets nothing."""

import asyncio
import subprocess
import uuid

import asyncssh
import pytest

from .conftest import events_of

pytestmark = pytest.mark.integration

ECHO_SERVER = """
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
while data := c.recv(65536):
    c.sendall(data)
"""


async def _user_with_key(stack, t):
    user = uuid.uuid4()
    key = asyncssh.generate_private_key("ssh-ed25519")
    public = key.export_public_key().decode().split()[:2]
    await stack.membership(t.id, user, "member")
    await stack.ssh_key(user, " ".join(public), key.get_fingerprint("sha256"))
    await stack.until(
        lambda: stack.sql("SELECT 1 FROM ssh_keys WHERE user_id = %s", user),
        what="the key projected",
    )
    return user, key


@pytest.fixture(scope="module")
async def endpoint(stack) -> dict:
    """`GET /v1/terminal/ssh` (public): where the endpoint is and its host key, which every
    connection below pins (never trust on first use)."""
    answer = await stack.call("GET", "/v1/terminal/ssh")
    assert answer.status_code == 200, answer.text
    return answer.json()


def _client(stack, t, key, endpoint, known_hosts=None):
    pinned = asyncssh.import_known_hosts("\n".join(known_hosts or endpoint["known_hosts"]))
    return asyncssh.connect(
        endpoint["host"], endpoint["port"], username=str(t.allocation_id), client_keys=[key],
        known_hosts=pinned, agent_path=None,
    )  # fmt: skip


async def test_the_endpoint_document_names_the_port_and_the_key_it_presents(stack, endpoint):
    assert (endpoint["host"], endpoint["port"]) == ("127.0.0.1", stack.ssh_port)
    [host_key] = endpoint["host_keys"]
    assert host_key.startswith("ssh-ed25519 ")
    assert endpoint["known_hosts"] == [f"[127.0.0.1]:{stack.ssh_port} {host_key}"]
    t = await stack.tenant()
    _, key = await _user_with_key(stack, t)
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().split()
    forged = [f"[127.0.0.1]:{stack.ssh_port} {other[0]} {other[1]}"]
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with _client(stack, t, key, endpoint, known_hosts=forged):
            pass


async def test_a_registered_key_runs_commands_shells_and_forwards(stack, endpoint):
    t = await stack.tenant()
    user, key = await _user_with_key(stack, t)
    async with _client(stack, t, key, endpoint) as conn:
        result = await conn.run("echo out; echo err >&2; id -u; exit 3", check=False)
        assert result.exit_status == 3
        assert result.stdout.splitlines()[0] == "out" and result.stderr == "err\n"
        assert int(result.stdout.splitlines()[1]) >= 5_000_000  # the allocation's own user

        process = await conn.create_process(term_type="xterm", term_size=(100, 30))
        process.stdin.write("stty size\n")
        seen = ""
        async with asyncio.timeout(10):
            while "30 100" not in seen:
                seen += await process.stdout.read(4096)
        process.change_terminal_size(120, 40)
        await asyncio.sleep(0.2)
        process.stdin.write("stty size; exit\n")
        async with asyncio.timeout(10):
            while "40 120" not in seen:
                seen += await process.stdout.read(4096)
        await process.wait_closed()

        account = stack.reconciler.accounts.account(str(t.allocation_id))
        echo = subprocess.Popen(  # noqa: ASYNC220 - the allocation's own server, as its user
            ["/usr/bin/python3", "-c", ECHO_SERVER], user=account.uid, group=account.gid,
            extra_groups=[], cwd=account.home, stdout=subprocess.PIPE,
        )  # fmt: skip
        try:
            port = int(await asyncio.to_thread(echo.stdout.readline))
            listener = await conn.forward_local_port("127.0.0.1", 0, "127.0.0.1", port)
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.get_port())
            writer.write(b"through the tunnel")
            assert await asyncio.wait_for(reader.readexactly(18), 5) == b"through the tunnel"
            writer.close()
            listener.close()
        finally:
            echo.kill()
            echo.wait()
    rows = stack.sql(
        "SELECT kind, state, reason, via, client_address FROM sessions WHERE user_id = %s"
        " ORDER BY minted_at",
        user,
    )
    assert [r[0] for r in rows] == ["exec", "shell", "forward"]
    assert all(r[3] == "ssh" and r[4] == "127.0.0.1" for r in rows)
    await stack.until(
        lambda: all(
            s in ("closed",)
            for (s,) in stack.sql("SELECT state FROM sessions WHERE user_id = %s", user)
        ),
        what="every ssh session closed",
    )
    [(exec_id,)] = stack.sql("SELECT id FROM sessions WHERE user_id = %s AND kind = 'exec'", user)
    assert [e for e, _ in events_of(stack, str(exec_id))][-1] == "terminal.session.closed"
    assert events_of(stack, str(exec_id))[-1][1]["recording_digest"].startswith("sha256:")


async def test_an_unregistered_key_and_a_viewer_are_refused(stack, endpoint):
    t = await stack.tenant()
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(asyncssh.PermissionDenied):
        async with _client(stack, t, stranger, endpoint):
            pass
    # A registered key whose user is only a viewer of the tenant.
    user = uuid.uuid4()
    key = asyncssh.generate_private_key("ssh-ed25519")
    await stack.membership(t.id, user, "viewer")
    await stack.ssh_key(
        user, " ".join(key.export_public_key().decode().split()[:2]), key.get_fingerprint("sha256")
    )
    await stack.until(
        lambda: stack.sql("SELECT 1 FROM ssh_keys WHERE user_id = %s", user), what="projected"
    )
    with pytest.raises(asyncssh.PermissionDenied):
        async with _client(stack, t, key, endpoint):
            pass
    assert stack.sql("SELECT count(*) FROM sessions WHERE allocation_id = %s", t.allocation_id) == [
        (0,)
    ]
