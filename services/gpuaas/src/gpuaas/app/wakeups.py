"""Long-poll node sync: one LISTEN connection per process wakes the sync requests held for
a node when that node's desired state changes.

Every allocation transition on a node (`lifecycle.move`) sends `NOTIFY gpuaas_node,
'<node id>'` inside its transaction, so the notification arrives only once the change is
committed (and never for one rolled back). A held request waits for its node's
notification, re-reading the desired allocation ids every `FALLBACK_POLL_S` as well: a
lost listener connection (reconnected with backoff) or a missed notification costs at most
that much latency, never a stuck request.
"""

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable

from gpuaas.store.repository import NODE_CHANNEL
from platformkit.listen import Listener

FALLBACK_POLL_S = 2.0


def differs(desired_ids: set[str], observed: dict[str, str]) -> bool:
    """The agent has something to do: a desired allocation it does not run, or one it runs
    (or reports failed) that is no longer desired."""
    return desired_ids != set(observed)


class NodeWakeups:
    def __init__(self, url: str) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._listener = Listener(url, NODE_CHANNEL, self._wake, self._wake_all)
        self.listening = self._listener.listening

    def start(self) -> None:
        self._listener.start()

    async def stop(self) -> None:
        await self._listener.stop()

    def _wake(self, node_id: str) -> None:
        for event in self._waiters.get(node_id, ()):
            event.set()

    def _wake_all(self) -> None:
        # After a (re)connect anything may have changed: let every waiter re-read.
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
