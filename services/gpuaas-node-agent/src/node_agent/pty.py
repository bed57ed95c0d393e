"""Processes on a pseudo-terminal (shells, `ssh -t` commands) or on pipes (`ssh host cmd`),
read and written without blocking the event loop, and the scrollback ring a detached
session keeps for its reattach."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import os
import signal
import struct
import subprocess
import termios
from pathlib import Path
from typing import Any

_READ_CHUNK = 65536
# Small reads (keystroke echoes) are merged into the last chunk up to this size, so the
# ring holds few chunks.
_COALESCE = 4096


def window_size(cols: int, rows: int) -> bytes:
    return struct.pack("HHHH", rows, cols, 0, 0)


def _take_controlling_terminal() -> None:
    # Runs in the child after setsid (start_new_session) and the switch of user: the PTY on
    # fd 0 becomes its controlling terminal, so Ctrl-C, job control and SIGWINCH reach it.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def session_members(sid: int, proc: Path = Path("/proc")) -> list[int]:
    """Pids of the processes of session `sid` (a shell and everything it started, jobs in
    their own process groups included)."""
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        if len(fields) > 3 and fields[3] == str(sid):
            members.append(int(entry.name))
    return members


def kill_session(process: subprocess.Popen[bytes]) -> None:
    """HUP, then KILL, the whole session the process leads."""
    pid = process.pid
    for sig in (signal.SIGHUP, signal.SIGKILL):
        with contextlib.suppress(OSError):
            os.killpg(pid, sig)
        for member in session_members(pid):
            with contextlib.suppress(OSError):
                os.kill(member, sig)
        try:
            process.wait(timeout=1)
            break
        except subprocess.TimeoutExpired:
            continue
    if sig == signal.SIGHUP:
        for member in session_members(pid):  # jobs that ignored the hangup
            with contextlib.suppress(OSError):
                os.kill(member, signal.SIGKILL)


async def _ready(fd: int, writer: bool = False) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    add, remove = (
        (loop.add_writer, loop.remove_writer) if writer else (loop.add_reader, loop.remove_reader)
    )
    add(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        remove(fd)


async def read_fd(fd: int) -> bytes:
    """The next chunk from a non-blocking fd; b"" at its end (EIO on a PTY: nobody holds
    the other side any more). A PTY hands out at most a few KiB per read: what is already
    waiting is read on at once, up to 64 KiB, so fast output travels in few large frames
    (and a lone keystroke echo in one small one, without waiting)."""
    while True:
        try:
            data = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            await _ready(fd)
            continue
        except OSError:
            return b""
        if not data or len(data) >= _READ_CHUNK:
            return data
        parts, total = [data], len(data)
        while total < _READ_CHUNK:
            try:
                more = os.read(fd, _READ_CHUNK - total)
            except OSError:  # BlockingIOError included: nothing more waiting
                break
            if not more:
                break
            parts.append(more)
            total += len(more)
        return b"".join(parts) if len(parts) > 1 else data


async def write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await _ready(fd, writer=True)


class PtyProcess:
    """A process on a fresh PTY, the leader of its own session with the PTY as its
    controlling terminal. `options` are Popen's (env, cwd, user, group, umask ...)."""

    def __init__(self, argv: list[str], options: dict[str, Any], cols: int = 80, rows: int = 24):
        master, slave = os.openpty()
        try:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, window_size(cols, rows))
            if "user" in options:
                # The terminal belongs to the allocation's user (programs reopen it by name).
                os.fchown(slave, options["user"], options.get("group", -1))
            self.process = subprocess.Popen(
                argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,
                preexec_fn=_take_controlling_terminal,
                **options,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        self.pid = self.process.pid

    async def read(self) -> bytes:
        return await read_fd(self.master)

    async def write(self, data: bytes) -> None:
        await write_fd(self.master, data)

    async def end_input(self) -> None:
        await self.write(b"\x04")  # ^D: EOF for the program reading the terminal

    def resize(self, cols: int, rows: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, window_size(cols, rows))

    def exit_code(self) -> int | None:
        return self.process.poll()

    def close(self) -> None:
        kill_session(self.process)
        with contextlib.suppress(OSError):
            os.close(self.master)


class PipeProcess:
    """A command with stdin, stdout and stderr on pipes (no PTY: bytes pass unchanged)."""

    def __init__(self, argv: list[str], options: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            **options,
        )
        self.pid = self.process.pid
        assert self.process.stdin and self.process.stdout and self.process.stderr
        self.stdin: int | None = self.process.stdin.fileno()
        self.outputs = (self.process.stdout.fileno(), self.process.stderr.fileno())
        for fd in (self.stdin, *self.outputs):
            os.set_blocking(fd, False)

    async def write(self, data: bytes) -> None:
        if self.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                await write_fd(self.stdin, data)

    async def end_input(self) -> None:
        if self.stdin is not None and self.process.stdin is not None:
            self.process.stdin.close()
            self.stdin = None

    def resize(self, cols: int, rows: int) -> None:
        pass

    def exit_code(self) -> int | None:
        return self.process.poll()

    def close(self) -> None:
        kill_session(self.process)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class Scrollback:
    """The last `limit` bytes of output, addressed by absolute offset (bytes since the
    session started), so an attachment knows what it has sent and a reattach replays what
    is still held."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._chunks: collections.deque[bytearray] = collections.deque()
        self.start = 0  # offset of the first byte still held
        self.end = 0  # offset after the last byte written

    def append(self, data: bytes) -> None:
        if not data:
            return
        if self._chunks and len(self._chunks[-1]) + len(data) <= _COALESCE:
            self._chunks[-1] += data
        else:
            self._chunks.append(bytearray(data))
        self.end += len(data)
        while self.end - self.start > self.limit:
            excess = self.end - self.start - self.limit
            first = self._chunks[0]
            if len(first) <= excess:
                self._chunks.popleft()
                self.start += len(first)
            else:
                del first[:excess]
                self.start += excess

    def read(self, offset: int, max_bytes: int = _READ_CHUNK) -> tuple[int, bytes]:
        """(where the bytes start, up to `max_bytes` from `offset`); bytes trimmed away
        before `offset` are skipped (the returned start is then later than asked)."""
        offset = max(offset, self.start)
        out = bytearray()
        position = self.start
        for chunk in self._chunks:
            chunk_end = position + len(chunk)
            if chunk_end > offset:
                out += chunk[max(0, offset - position) :]
                if len(out) >= max_bytes:
                    break
            position = chunk_end
        return offset, bytes(out[:max_bytes])
