"""The local mail sink: a real SMTP server (aiosmtpd) that delivers nothing and writes each
message it receives to <state>/mail/<received>-<id>.eml. iam sends its verification and
invitation mail here (GPUCLOUD_SMTP_HOST/PORT); `just mail` lists the messages, and the
tests complete sign-up and invitations by reading them, as a person reads their inbox.

`python -m devstack.mail serve <port> <folder>` is the process devstack supervises.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import re
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devstack import supervise
from devstack.fleet import Fleet
from devstack.paths import state_dir, venv_python

NAME = "mail-sink"
HOST = "127.0.0.1"
TOKEN = re.compile(r"token=(gc[vi]_[A-Za-z0-9_-]+)")


def folder() -> Path:
    path = state_dir() / "mail"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Message:
    path: Path
    to: str
    subject: str
    body: str

    @property
    def token(self) -> str | None:
        found = TOKEN.search(self.body)
        return found.group(1) if found else None

    @property
    def link(self) -> str | None:
        found = re.search(r"https?://\S+", self.body)
        return found.group(0) if found else None


def read(path: Path) -> Message:
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    body = parsed.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else ""
    return Message(path, str(parsed.get("To", "")), str(parsed.get("Subject", "")), text)


def messages(where: Path | None = None, to: str | None = None) -> list[Message]:
    """Every message in the sink, oldest first; only those to `to` when given."""
    found = [read(p) for p in sorted((where or folder()).glob("*.eml"))]
    if to is not None:
        found = [m for m in found if m.to.strip().lower() == to.strip().lower()]
    return found


def wait_for_token(
    to: str, prefix: str, *, where: Path | None = None, after: int = 0, within: float = 20.0
) -> str:
    """The token (`gcv_...` verification, `gci_...` invitation) of the newest message to
    `to` carrying one, beyond the first `after` such messages; waits for it to arrive."""
    deadline = time.monotonic() + within
    while True:
        tokens = [m.token for m in messages(where, to) if m.token and m.token.startswith(prefix)]
        if len(tokens) > after:
            return tokens[-1]
        if time.monotonic() > deadline:
            raise TimeoutError(f"no message with a {prefix} token to {to} within {within:g} s")
        time.sleep(0.1)


def verified_sign_up(
    client: httpx.Client, body: dict[str, str], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """iam's sign-up completed as a person does it: POST /v1/iam/signup (202), the link
    mailed to the address, POST /v1/iam/verify. The verification's body: the tenant, the
    owner and the default project. For scripts and benchmarks against a devstack."""
    seen = len([m for m in messages(to=body["email"]) if m.token and m.token.startswith("gcv_")])
    signed = client.post("/v1/iam/signup", json=body, headers=headers or {})
    if signed.status_code != 202:
        raise RuntimeError(f"sign-up: HTTP {signed.status_code} {signed.text[:300]}")
    token = wait_for_token(body["email"], "gcv_", after=seen)
    verified = client.post("/v1/iam/verify", json={"token": token})
    if verified.status_code != 201:
        raise RuntimeError(f"verification: HTTP {verified.status_code} {verified.text[:300]}")
    return verified.json()


# -- the server ---------------------------------------------------------------------------


class _Keep:
    """aiosmtpd handler: each accepted message becomes one file (written, then renamed, so
    a reader never sees half a message)."""

    def __init__(self, into: Path) -> None:
        self.into = into

    async def handle_DATA(self, server, session, envelope) -> str:
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
        partial = self.into / f".{name}.part"
        partial.write_bytes(envelope.original_content or envelope.content)
        partial.rename(self.into / name)
        return "250 Message accepted for delivery"


@contextlib.contextmanager
def sink(into: Path, port: int = 0) -> Iterator[int]:
    """The sink running in this process (a thread) while the block runs: its port. Port 0
    picks a free one (tests)."""
    from aiosmtpd.controller import Controller

    if port == 0:
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
    into.mkdir(parents=True, exist_ok=True)
    controller = Controller(_Keep(into), hostname=HOST, port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def serve(port: int, into: Path) -> None:
    with sink(into, port):
        print(f"mail sink listening on {HOST}:{port}, writing to {into}", flush=True)
        asyncio.run(_forever())


async def _forever() -> None:
    await asyncio.Event().wait()  # until the process is stopped


def listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as conn:
            return conn.recv(3) == b"220"
    except OSError:
        return False


def start(fleet: Fleet, timeout: float = 20.0) -> int:
    """Start the sink unless it runs; return its port once it greets."""
    port = fleet.mail_sink_port
    if not supervise.running_pid(NAME):
        if listening(port):
            raise RuntimeError(f"port {port} is held by another SMTP server (another devstack?)")
        supervise.spawn(
            NAME, [str(venv_python()), "-m", "devstack.mail", "serve", str(port), str(folder())]
        )
    deadline = time.monotonic() + timeout
    while not listening(port):
        if not supervise.running_pid(NAME):
            log = supervise.log_file(NAME)
            raise RuntimeError(f"the mail sink exited; last lines of {log}:\n{supervise.tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the mail sink did not answer within {timeout:.0f}s")
        time.sleep(0.1)
    return port


def stop() -> int | None:
    return supervise.stop_many([NAME]).get(NAME)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit("usage: python -m devstack.mail serve <port> <folder>")
