"""Long-poll node sync: one LISTEN connection per process wakes the sync requests held for
a node when that node's desired state changes.

Every allocation transition on a node (`lifecycle.move`) sends `NOTIFY gpuaas_node,
'<node id>'` inside its transaction, so the notification arrives only once the change is
committed (and never for one rolled back). A held request waits for its node's
notification, re-reading the desired allocation ids every `FALLBACK_POLL_S` as well: a
lost listener connection (reconnected by the runtime's job supervisor, with backoff) or a
missed notification costs at most that much latency, never a stuck request.
"""

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable

import psycopg

from gpuaas.store.repository import NODE_CHANNEL

log = logging.getLogger(__name__)

FALLBACK_POLL_S = 2.0


def differs(desired_ids: set[str], observed: dict[str, str]) -> bool:
    """The agent has something to do: a desired allocation it does not run, or one it runs
    (or reports failed) that is no longer desired."""
    return desired_ids != set(observed)


class NodeWakeups:
    """Run by the service runtime as the `node-wakeups` job: `listen()` is one session."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self.listening = asyncio.Event()

    async def listen(self, _runtime: object = None) -> None:
        """Dispatch notifications until the connection is lost (then return, so the next
        session starts soon); raise when the database cannot be reached (the runtime backs
        off)."""
        try:
            conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        except Exception:
            self._deaf()
            raise
        try:
            async with conn:
                await conn.execute(f"LISTEN {NODE_CHANNEL}")
                self.listening.set()
                async for note in conn.notifies():
                    for event in self._waiters.get(note.payload, ()):
                        event.set()
        except Exception as exc:
            log.warning("node wakeups: listener lost", extra={"fields": {"error": repr(exc)}})
        finally:
            self._deaf()

    def _deaf(self) -> None:
        self.listening.clear()
        # Anything may have changed while we were deaf: let every waiter re-read.
        for events in self._waiters.values():
            for event in events:
                event.set()

    @contextlib.asynccontextmanager
    async def watching(self, node_id: uuid.UUID):
        """Register before reading the node's state, so no commit after it goes unnoticed."""
        event = asyncio.Event()
        key = str(node_id)
        self._waiters[key].add(event)
        try:
            yield event
        finally:
            self._waiters[key].discard(event)
            if not self._waiters[key]:
                del self._waiters[key]


async def hold_until_changed(
    event: asyncio.Event,
    hold_s: float,
    changed: Callable[[], Awaitable[bool]],
) -> None:
    """Return when `changed()` says so after a wakeup or a fallback poll, or after `hold_s`.
    The caller cleared `event` before its own last read; a notification after that sets it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + hold_s
    if await changed():
        return
    while (remaining := deadline - loop.time()) > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), min(remaining, FALLBACK_POLL_S))
        event.clear()
        if await changed():
            return
