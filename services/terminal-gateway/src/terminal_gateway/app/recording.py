"""Recording a session as it is relayed: asciicast v2 lines (domain.asciicast), appended to
`recording_chunks` in terminal-gateway's database.

Output, input and resizes are encoded as they pass and written in chunks (at least every
FLUSH_INTERVAL_S, or at FLUSH_BYTES). Writing is synchronous in Teleport's sense: the relay
waits while more than MAX_PENDING bytes are not yet stored (a slow database slows the
session rather than dropping its recording), and a write that fails sets `failed`, upon
which the relay ends the session (`recording_failed`). What a crash of terminal-gateway can
lose is the last unflushed interval; a session that ends cleanly flushes everything before
its final state (and the digest of the stored recording) commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid

import msgspec

from platformkit.db import Database
from terminal_gateway.domain import asciicast
from terminal_gateway.store.repository import RecordingRepository

log = logging.getLogger(__name__)
FLUSH_BYTES = 256 * 1024
FLUSH_INTERVAL_S = 0.2
MAX_PENDING = 768 * 1024


class RecordingFailed(Exception):
    pass


class Recorder:
    def __init__(self, db: Database, session_id: uuid.UUID, origin: dt.datetime) -> None:
        self.db = db
        self.session_id = session_id
        self.origin = origin  # the session's first attach: time 0 of the recording
        self.encoder = asciicast.Encoder(msgspec.json.encode)  # ~10x the stdlib's speed
        self.pending = bytearray()
        self.failed = asyncio.Event()
        self.error: BaseException | None = None
        self.written = 0
        self._seq = 0
        self._flushed = asyncio.Event()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self, cols: int, rows: int, title: str) -> None:
        """Continue the session's recording (a reattach), or begin it with its header."""
        async with self.db.unit_of_work() as uow:
            self._seq = await RecordingRepository(uow).next_seq(self.session_id)
        if self._seq == 0:
            self.pending += asciicast.header(cols, rows, int(self.origin.timestamp()), title)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _now(self) -> float:
        return (dt.datetime.now(dt.UTC) - self.origin).total_seconds()

    def output(self, data: bytes) -> None:
        self._add(self.encoder.output(self._now(), data))

    def input(self, data: bytes) -> None:
        self._add(self.encoder.input(self._now(), data))

    def resize(self, cols: int, rows: int) -> None:
        self._add(self.encoder.resize(self._now(), cols, rows))

    def _add(self, line: bytes) -> None:
        self.pending += line
        if len(self.pending) >= FLUSH_BYTES:
            self._wake.set()

    async def room(self) -> None:
        """Wait while too much is unrecorded (or raise once recording failed)."""
        while len(self.pending) > MAX_PENDING and not self.failed.is_set():
            self._wake.set()
            self._flushed.clear()
            await self._flushed.wait()
        if self.failed.is_set():
            raise RecordingFailed(str(self.error))

    async def _run(self) -> None:
        while not self.failed.is_set() and not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_INTERVAL_S)
            self._wake.clear()
            if self._closing:
                return
            try:
                await self.flush()
            except RecordingFailed:
                return

    async def flush(self) -> None:
        async with self._lock:
            if self.failed.is_set():
                raise RecordingFailed(str(self.error))
            if not self.pending:
                return
            data, self.pending = bytes(self.pending), bytearray()
            try:
                async with self.db.unit_of_work() as uow:
                    await RecordingRepository(uow).add(
                        self.session_id, self._seq, data, dt.datetime.now(dt.UTC)
                    )
                    await uow.commit()
            except Exception as exc:
                self.error = exc
                self.failed.set()
                self._flushed.set()
                log.error(
                    "session recording failed",
                    extra={"fields": {"session_id": str(self.session_id), "error": repr(exc)}},
                )
                raise RecordingFailed(repr(exc)) from exc
            self._seq += 1
            self.written += len(data)
            self._flushed.set()

    async def close(self) -> None:
        """Flush what is left and stop (RecordingFailed when it cannot be stored). A flush in
        flight is waited for, never cancelled: cancelling it lost the bytes it had taken
        from `pending` (found by the chaos run: a short session closed with no recording)."""
        if self._task is not None:
            self._closing = True
            self._wake.set()
            with contextlib.suppress(Exception):
                await self._task
        await self.flush()
