"""The local end of `gpucloud terminal`: this process's terminal in raw mode (every key goes
to the remote shell, Ctrl-C included; the remote PTY does the echo and line editing), its
size sent on start and on every SIGWINCH, keystrokes read without blocking the event loop,
output written as it arrives. The mode is restored however the command ends.

Without a terminal on stdin (`gpucloud terminal ID < script`), input is passed through as
is and its end sends Ctrl-D once the output is quiet (commands/access.py), which ends a
shell waiting at its prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Iterator

# Queue items besides keystrokes: the window changed; stdin ended.
RESIZED = "resized"
EOF_KEY = b"\x04"
READ_SIZE = 65536


class LocalTerminal:
    def __init__(self, infd: int = 0, outfd: int = 1, notefd: int = 2) -> None:
        self.infd, self.outfd, self.notefd = infd, outfd, notefd
        self.interactive = os.isatty(infd)
        self.raw = False
        self.queue: asyncio.Queue[bytes | str | None] = asyncio.Queue()
        self.last_output = 0.0  # time.monotonic() of the last output drawn

    def size(self) -> tuple[int, int] | None:
        """(cols, rows) of the terminal we draw on, if there is one."""
        for fd in (self.outfd, self.infd):
            if os.isatty(fd):
                with contextlib.suppress(OSError):
                    cols, rows = os.get_terminal_size(fd)
                    if cols and rows:
                        return min(cols, 1000), min(rows, 1000)
        return None

    @contextlib.contextmanager
    def raw_mode(self) -> Iterator[None]:
        if not self.interactive:
            yield
            return
        import termios
        import tty

        saved = termios.tcgetattr(self.infd)
        tty.setraw(self.infd, termios.TCSANOW)
        self.raw = True
        try:
            yield
        finally:
            termios.tcsetattr(self.infd, termios.TCSADRAIN, saved)
            self.raw = False

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.outfd, view)
            view = view[written:]

    def note(self, text: str) -> None:
        """A line of our own (not the shell's) on the note stream; raw mode needs \\r\\n."""
        line = f"\r\n[gpucloud] {text}\r\n" if self.raw else f"[gpucloud] {text}\n"
        with contextlib.suppress(OSError):
            os.write(self.notefd, line.encode())

    @contextlib.contextmanager
    def reading(self, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        """Feed keystrokes (and RESIZED on SIGWINCH, None at the end of input) into
        `self.queue` while the block runs."""
        with_reader = self._add_reader(loop)
        has_winch = hasattr(signal, "SIGWINCH") and self.interactive
        if has_winch:
            loop.add_signal_handler(signal.SIGWINCH, self.queue.put_nowait, RESIZED)
        try:
            yield
        finally:
            if has_winch:
                loop.remove_signal_handler(signal.SIGWINCH)
            if with_reader:
                loop.remove_reader(self.infd)

    def _add_reader(self, loop: asyncio.AbstractEventLoop) -> bool:
        def readable() -> None:
            try:
                data = os.read(self.infd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(self.infd)
            self.queue.put_nowait(data or None)

        try:
            loop.add_reader(self.infd, readable)
            return True
        except (PermissionError, OSError, ValueError):
            # a regular file (epoll refuses them): read it in a thread instead
            threading.Thread(target=self._read_blocking, args=(loop,), daemon=True).start()
            return False

    def _read_blocking(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                data = os.read(self.infd, READ_SIZE)
            except OSError:
                data = b""
            loop.call_soon_threadsafe(self.queue.put_nowait, data or None)
            if not data:
                return
