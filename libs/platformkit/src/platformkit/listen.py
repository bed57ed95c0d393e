"""PostgreSQL LISTEN, kept alive: one connection per process receives a channel's
notifications and hands each payload to a callback.

A NOTIFY sent inside a transaction is delivered only when it commits (never for one rolled
back), so "wake whoever cares about X once X changed" needs no polling. The connection is
re-made with backoff (0.5 s to 10 s) when it drops; `on_gap` runs after every (re)connect,
because notifications sent while nobody listened are lost: the caller re-reads what it
watches then. `listening` is set while the LISTEN is in place.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable

import psycopg

log = logging.getLogger(__name__)


class Listener:
    def __init__(
        self,
        url: str,
        channel: str,
        on_notify: Callable[[str], None],
        on_gap: Callable[[], None] = lambda: None,
    ) -> None:
        if not channel.isidentifier():
            raise ValueError("a channel is a plain identifier")
        self.url = url
        self.channel = channel
        self.on_notify = on_notify
        self.on_gap = on_gap
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name=f"listen-{self.channel}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen_forever(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {self.channel}")
                    self.listening.set()
                    self.on_gap()
                    delay = 0.5
                    async for note in conn.notifies():
                        self.on_notify(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "listener lost", extra={"fields": {"channel": self.channel, "error": repr(exc)}}
                )
            self.listening.clear()
            self.on_gap()  # anything may have changed while we were deaf
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
