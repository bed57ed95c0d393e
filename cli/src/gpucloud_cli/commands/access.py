"""terminal, ssh, ssh-keys: a shell on a running allocation (docs/terminal.md).

- `terminal ID` opens a browser-terminal session in this terminal: minted by
  terminal-gateway, relayed over the gateway's WebSocket (gpucloud_terminal), raw mode,
  resizes on SIGWINCH, and a reattach with a fresh token when the connection drops (the
  shell keeps running on the node for the grace window; its screen is replayed).
- `ssh ID` runs the system's `ssh` against terminal-gateway's SSH endpoint with its host
  key pinned (from `GET /v1/terminal/ssh`, never trusted on first use); `ssh --config`
  writes ssh_config entries for the project's running allocations instead.
- `ssh-keys` registers, lists and revokes the public keys `ssh` signs in with (iam).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gpucloud_cli.app import App, Scope, confirm, json_option, pass_app
from gpucloud_cli.commands.gpus import resolve_allocation, scope_json
from gpucloud_cli.config import Store, write_private
from gpucloud_cli.output import emit_json, note, table
from gpucloud_cli.sdk.errors import (
    ApiError,
    GpucloudError,
    InvalidInput,
    NetworkError,
    ServerError,
    Unfinished,
    UnknownName,
    from_answer,
)
from gpucloud_cli.units import short_id

if TYPE_CHECKING:
    from gpucloud_cli.localterm import LocalTerminal
    from gpucloud_cli.sdk.client import Client
    from gpucloud_cli.sdk.models import SshEndpoint, TerminalConnect, TerminalSession

KNOWN_HOSTS_FILE = "known_hosts"
SSH_CONFIG_FILE = "ssh_config"
# Endings that are the user's doing (or the shell's): not an error of the command.
QUIET_ENDINGS = frozenset({"exited", "closed"})
QUIET_S = 0.3  # output this long quiet: the shell waits for input


# -- terminal -------------------------------------------------------------------------------


@click.command()
@click.argument("allocation", metavar="ID")
@click.option(
    "--attach",
    "session_id",
    metavar="SESSION",
    help="Reattach to this session of yours (detached or open elsewhere; its screen is "
    "replayed) instead of opening a new one.",
)
@json_option
@pass_app
def terminal(app: App, allocation: str, session_id: str | None, as_json: bool) -> int:
    """Open a terminal on a running allocation, in this terminal.

    Every key goes to the remote shell (raw mode; `exit` or Ctrl-D ends it); the window
    size follows yours. A lost connection reattaches by itself while the session's grace
    window lasts (the shell keeps running on the node); after that, or from another
    machine, `gpucloud terminal ID --attach SESSION`. Exits with the shell's exit status.
    With --json the shell's output goes to stderr and stdout gets one document at the end.
    """
    from gpucloud_cli.localterm import LocalTerminal

    scope = app.scope()
    allocation_id = resolve_allocation(scope, allocation)
    client = scope.client
    if session_id:
        first = client.attach_terminal_session(session_id)
        if first.session.allocation_id != allocation_id:
            raise InvalidInput("attach", f"session {session_id} is not on allocation {allocation}")
    else:
        first = client.open_terminal_session(allocation_id)
    local = LocalTerminal(outfd=2 if as_json else 1)
    outcome = asyncio.run(_run(client, first, local, quiet=as_json))
    return _finish(scope, allocation_id, first, outcome, as_json)


class Outcome:
    def __init__(self) -> None:
        self.exit_code: int | None = None
        self.reason: str | None = None
        self.message: str | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.attachments = 0
        self.gave_up = False
        self.error: BaseException | None = None


async def _run(
    client: Client, first: TerminalConnect, local: LocalTerminal, *, quiet: bool
) -> Outcome:
    from gpucloud_terminal import protocol
    from gpucloud_terminal.client import Connection, Frame, run_with_reattach

    session_id = first.session.id
    url = client.terminal_connect_url(session_id)
    pending = [first.token]
    dropped = False

    async def attach() -> tuple[str, str]:
        if pending:
            return url, pending.pop()
        try:
            again = await asyncio.to_thread(client.attach_terminal_session, session_id)
        except (NetworkError, ServerError) as exc:  # worth another try
            raise OSError(str(exc)) from None
        return url, again.token

    async def on_frame(frame: Frame) -> None:
        nonlocal dropped
        if isinstance(frame, bytes):
            local.write(frame)
            local.last_output = time.monotonic()
        elif frame.type == "attached" and dropped:
            dropped = False
            if not quiet:
                local.note("reattached")

    async def on_drop(delay: float) -> None:
        nonlocal dropped
        if not dropped and not quiet:
            local.note("connection lost: reattaching (the shell keeps running)")
        dropped = True

    async def pump(connection: Connection) -> None:
        size = local.size()
        if size:
            await connection.resize(*size)
        while True:
            item = await local.queue.get()
            if item is None:  # end of input: end it like a Ctrl-D at a prompt
                await _end_of_input(connection, local)
                return
            if item == "resized":
                if size := local.size():
                    await connection.resize(*size)
                continue
            assert isinstance(item, bytes)
            await connection.send(item)

    outcome = Outcome()
    loop = asyncio.get_running_loop()
    with local.raw_mode(), local.reading(loop):
        ended = await run_with_reattach(
            attach, on_frame, policy=protocol.Reattach(), pump=pump, on_drop=on_drop
        )
    outcome.attachments, outcome.gave_up, outcome.error = (
        ended.attachments,
        ended.gave_up,
        ended.error,
    )
    outcome.exit_code = ended.exit_code
    if ended.closing is not None:
        outcome.reason = ended.closing.get("reason")
        outcome.message = ended.closing.get("message")
    if ended.connection is not None:
        outcome.close_code = ended.connection.close_code
        outcome.close_reason = ended.connection.close_reason
    return outcome


async def _end_of_input(connection: Any, local: LocalTerminal) -> None:
    """Ctrl-D once the output has been quiet for a moment, again while the session lasts:
    a Ctrl-D that reaches the PTY before the shell has set up its line editor is lost (the
    terminal changes mode under it), so it goes when the shell sits at its prompt."""
    while True:
        quiet = time.monotonic() - local.last_output
        if quiet < QUIET_S:
            await asyncio.sleep(QUIET_S - quiet)
            continue
        await connection.send(b"\x04")
        await asyncio.sleep(1.0)


def _finish(
    scope: Scope, allocation_id: str, first: TerminalConnect, outcome: Outcome, as_json: bool
) -> int:
    session = _latest(scope.client, first.session)
    document: dict[str, Any] = {
        **scope_json(scope),
        "allocation_id": allocation_id,
        "session": session.to_json(),
        "exit_code": outcome.exit_code,
        "reason": outcome.reason or session.reason,
        "message": outcome.message,
        "attachments": outcome.attachments,
    }
    if outcome.gave_up:
        raise NetworkError(
            f"lost the connection to session {session.id} and could not reattach "
            f"({outcome.error or 'dropped'}); it waits for a reattach until its grace window "
            f"ends: `gpucloud terminal {short_id(allocation_id)} --attach {session.id}`"
        )
    refused = _refusal(outcome)
    if refused is not None:
        raise refused
    reason = document["reason"]
    if outcome.exit_code is None and reason not in QUIET_ENDINGS and reason is not None:
        raise Unfinished(f"the session ended: {outcome.message or reason}", document=document)
    if as_json:
        emit_json(document)
    elif outcome.exit_code is None or outcome.exit_code != 0:
        note(f"[dim]session {short_id(session.id)} ended ({reason or 'closed'})[/dim]")
    return outcome.exit_code or 0


def _refusal(outcome: Outcome) -> ApiError | None:
    """terminal-gateway refuses a connect with 4000 + an HTTP status (4401, 4403, ...)."""
    code = outcome.close_code or 0
    if outcome.reason is not None or not 4400 <= code < 4600:
        return None
    import json

    status = code - 4000
    body = {"title": "The terminal was refused", "detail": outcome.close_reason or None}
    return from_answer(status, {}, json.dumps(body).encode())


def _latest(client: Client, session: TerminalSession) -> TerminalSession:
    try:
        return client.get_terminal_session(session.id)
    except GpucloudError:
        return session


# -- ssh ------------------------------------------------------------------------------------


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("allocation", metavar="ID", required=False)
@click.argument("ssh_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- SSH ARGS...]")
@click.option(
    "--config",
    "write_config",
    is_flag=True,
    help="Write ssh_config entries (ID's, or every running allocation's) instead of "
    "connecting: then `ssh gpucloud-<id>` works with your own ssh.",
)
@click.option(
    "--config-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where --config writes [default: ssh_config in the gpucloud config directory].",
)
@json_option
@pass_app
def ssh(
    app: App,
    allocation: str | None,
    ssh_args: tuple[str, ...],
    write_config: bool,
    config_file: Path | None,
    as_json: bool,
) -> int:
    """SSH into a running allocation, or write ssh_config entries for it.

    Signs in with a key registered with `gpucloud ssh-keys add`. Runs your `ssh` against
    the platform's SSH endpoint with its host key pinned; anything after `--` goes to ssh
    (a command, `-L 8888:127.0.0.1:8888`, `-i KEY`). With --json it prints the connection
    and the ssh command instead of running them. `--config` writes ssh_config entries
    (`Host gpucloud-<id>`) to include from ~/.ssh/config.
    """
    scope = app.scope()
    store = app.store
    endpoint = scope.client.ssh_endpoint()
    known_hosts = _pin_host_keys(store, endpoint)
    if write_config:
        if ssh_args:
            raise InvalidInput("ssh_args", "--config takes at most one ID and no ssh arguments")
        return _write_config(scope, store, endpoint, known_hosts, allocation, config_file, as_json)
    if allocation is None:
        raise click.UsageError("missing ID (or --config)")
    allocation_id = _running(scope, allocation)
    argv = [
        "ssh",
        *_ssh_options(endpoint, known_hosts),
        "-l",
        allocation_id,
        endpoint.host,
        *ssh_args,
    ]
    if as_json:
        emit_json(
            {
                **scope_json(scope),
                "allocation_id": allocation_id,
                "endpoint": endpoint.to_json(),
                "known_hosts_file": str(known_hosts),
                "argv": argv,
            }
        )
        return 0
    program = shutil.which("ssh")
    if program is None:
        raise GpucloudError("no `ssh` on PATH: install OpenSSH's client", title="No ssh client")
    app.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(program, argv)  # noqa: S606 - the user's own ssh, with arguments we built
    return 0  # pragma: no cover - exec does not return


def _running(scope: Scope, allocation: str) -> str:
    allocation_id = resolve_allocation(scope, allocation)
    found = scope.client.get_allocation(scope.tenant_id, scope.project_id, allocation_id)
    if found.state != "running":
        raise Unfinished(f"allocation {short_id(allocation_id)} is {found.state}, not running")
    return allocation_id


def _ssh_options(endpoint: SshEndpoint, known_hosts: Path) -> list[str]:
    return [
        "-p",
        str(endpoint.port),
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
    ]


def _host_alias(endpoint: SshEndpoint) -> str:
    """How known_hosts names the endpoint (ssh looks up `[host]:port` off port 22)."""
    return endpoint.host if endpoint.port == 22 else f"[{endpoint.host}]:{endpoint.port}"


def _pin_host_keys(store: Store, endpoint: SshEndpoint) -> Path:
    """The endpoint's host keys in the config directory's known_hosts (0600), replacing what
    was pinned for the same host and port before; other lines are kept."""
    store.ensure_directory()
    path = store.directory / KNOWN_HOSTS_FILE
    alias = _host_alias(endpoint)
    with store.locked():
        kept = []
        if path.exists():
            kept = [
                line
                for line in path.read_text().splitlines()
                if line.strip() and line.split()[0] != alias
            ]
        lines = [*kept, *(f"{alias} {key}" for key in endpoint.host_keys)]
        write_private(path, "\n".join(lines) + "\n")
    return path


BEGIN, END = "# >>> gpucloud context {} (gpucloud ssh --config)", "# <<< gpucloud context {}"


def _write_config(
    scope: Scope,
    store: Store,
    endpoint: SshEndpoint,
    known_hosts: Path,
    allocation: str | None,
    config_file: Path | None,
    as_json: bool,
) -> int:
    """This context's section of the ssh_config file: one Host per running allocation (or
    ID's entry added to it). Other contexts' sections and anything else are kept."""
    path = (config_file or store.directory / SSH_CONFIG_FILE).expanduser().absolute()
    if allocation is not None:
        wanted = [_running(scope, allocation)]
    else:
        wanted = [
            a.id
            for a in scope.client.iter_allocations(scope.tenant_id, scope.project_id)
            if a.state == "running"
        ]
    begin, end = BEGIN.format(scope.context.name), END.format(scope.context.name)
    text = path.read_text() if path.exists() else ""
    before, section, after = _split_section(text, begin, end)
    blocks = _blocks(section) if allocation is not None else {}
    for allocation_id in wanted:
        blocks[allocation_id] = _host_block(allocation_id, endpoint, known_hosts)
    body = "".join(blocks[a] for a in sorted(blocks))
    rewritten = f"{before}{begin}\n{body}{end}\n{after}"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, rewritten)
    hosts = [
        {
            "alias": f"gpucloud-{short_id(a)}",
            "allocation_id": a,
            "host": endpoint.host,
            "port": endpoint.port,
            "user": a,
        }
        for a in sorted(blocks)
    ]
    include = f"Include {path}"
    if as_json:
        emit_json(
            {
                **scope_json(scope),
                "config_file": str(path),
                "known_hosts_file": str(known_hosts),
                "include": include,
                "endpoint": endpoint.to_json(),
                "hosts": hosts,
            }
        )
        return 0
    table(
        ["HOST", "ALLOCATION", "ENDPOINT"],
        [[h["alias"], h["allocation_id"], f"{h['host']}:{h['port']}"] for h in hosts],
        empty="no running allocation in this project",
    )
    note(
        f"Wrote {path}. Put `{include}` at the top of ~/.ssh/config (or use `ssh -F {path}`),"
        " then `ssh gpucloud-<id>`."
    )
    return 0


def _split_section(text: str, begin: str, end: str) -> tuple[str, str, str]:
    if begin in text and end in text.split(begin, 1)[1]:
        before, rest = text.split(begin, 1)
        section, after = rest.split(end, 1)
        return before, section.strip("\n") + "\n", after.lstrip("\n")
    separator = "" if not text or text.endswith("\n") else "\n"
    return text + separator, "", ""


def _blocks(section: str) -> dict[str, str]:
    """allocation id -> its Host block, of a section this command wrote."""
    blocks: dict[str, str] = {}
    current: list[str] = []
    for line in section.splitlines(keepends=True):
        if line.startswith("Host ") and current:
            _keep(blocks, current)
            current = []
        current.append(line)
    _keep(blocks, current)
    return blocks


def _keep(blocks: dict[str, str], lines: list[str]) -> None:
    for line in lines:
        key, _, value = line.strip().partition(" ")
        if key == "User" and value:
            blocks[value.strip()] = "".join(lines)
            return


def _host_block(allocation_id: str, endpoint: SshEndpoint, known_hosts: Path) -> str:
    return (
        f"Host gpucloud-{short_id(allocation_id)} gpucloud-{allocation_id}\n"
        f"    HostName {endpoint.host}\n"
        f"    Port {endpoint.port}\n"
        f"    User {allocation_id}\n"
        f'    UserKnownHostsFile "{known_hosts}"\n'
        "    StrictHostKeyChecking yes\n"
    )


# -- ssh-keys -------------------------------------------------------------------------------


@click.group("ssh-keys")
def ssh_keys() -> None:
    """Your SSH public keys, which `gpucloud ssh` signs in with."""


def _key_rows(keys: list[Any]) -> list[list[Any]]:
    return [
        [k.id, k.name, k.fingerprint, f"{k.algorithm} {k.bits}", k.created_at[:19],
         "revoked" if k.revoked_at else "active"]
        for k in keys
    ]  # fmt: skip


KEY_COLUMNS = ["KEY ID", "NAME", "FINGERPRINT", "TYPE", "ADDED", "STATUS"]


@ssh_keys.command("list")
@click.option("-a", "--all", "show_all", is_flag=True, help="Revoked keys too.")
@json_option
@pass_app
def list_ssh_keys(app: App, show_all: bool, as_json: bool) -> None:
    """List your SSH keys and their fingerprints."""
    scope = app.scope()
    keys = [k for k in scope.client.list_ssh_keys() if show_all or not k.revoked_at]
    if as_json:
        emit_json({"context": scope.context.name, "keys": [k.to_json() for k in keys]})
        return
    table(
        KEY_COLUMNS,
        _key_rows(keys),
        empty="no SSH keys: `gpucloud ssh-keys add ~/.ssh/id_ed25519.pub`",
    )


@ssh_keys.command("add")
@click.argument("public_key", metavar="FILE|-")
@click.option("--name", help="A name to tell it apart [default: the key's comment].")
@json_option
@pass_app
def add_ssh_key(app: App, public_key: str, name: str | None, as_json: bool) -> None:
    """Register an SSH public key (ed25519, or RSA of 3072 bits or more).

    FILE is the `.pub` file (`-`: read it from stdin). Needs a recent second factor.
    """
    text = _read_public_key(public_key)
    scope = app.scope()
    key = scope.client.add_ssh_key(text, name)
    if as_json:
        emit_json({"context": scope.context.name, "key": key.to_json()})
        return
    table(KEY_COLUMNS, _key_rows([key]))


def _read_public_key(source: str) -> str:
    if source == "-":
        text = sys.stdin.read()
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise InvalidInput("public_key", f"{source}: no such file")
        if not path.name.endswith(".pub") and "PRIVATE KEY" in path.read_text(errors="replace"):
            raise InvalidInput("public_key", f"{source} is a private key: give its .pub file")
        text = path.read_text()
    text = text.strip()
    if not text or "\n" in text:
        raise InvalidInput("public_key", "give one OpenSSH public key line")
    return text


@ssh_keys.command("revoke")
@click.argument("key", metavar="KEY_ID|FINGERPRINT")
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@json_option
@pass_app
def revoke_ssh_key(app: App, key: str, yes: bool, as_json: bool) -> None:
    """Revoke an SSH key (by id or fingerprint): it no longer signs in."""
    scope = app.scope()
    found = [k for k in scope.client.list_ssh_keys() if key in (k.id, k.fingerprint)]
    if not found:
        raise UnknownName(f"no SSH key {key!r}: `gpucloud ssh-keys list` shows them")
    target = found[0]
    confirm(f"Revoke SSH key {target.name} ({target.fingerprint})?", yes=yes)
    scope.client.revoke_ssh_key(target.id)
    if as_json:
        emit_json({"context": scope.context.name, "revoked": {"id": target.id}})
        return
    note(f"Revoked {target.fingerprint}.")
