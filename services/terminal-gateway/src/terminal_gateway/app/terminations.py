"""The `node-terminations` job: ends at their node the shells of sessions revoked while
detached (nobody relays them, so no relay can tell the agent). A revocation asks for it
after its transaction commits (`SessionService.on_revoked_detached`); the job attaches to
each such session with a token of its own and sends `terminate`, several at once. Best
effort: the agent's grace window ends the shell anyway, and the agent ends every shell of
an allocation that stops running on it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from terminal_gateway.app.relay import terminate_at_node
from terminal_gateway.app.sessions import SessionService
from terminal_gateway.store.repository import ProjectionRepository

log = logging.getLogger(__name__)


class NodeTerminations:
    def __init__(self, service: SessionService) -> None:
        self.service = service
        self._queue: asyncio.Queue[Any] = asyncio.Queue()

    def request(self, session: Any) -> None:
        if session.get("opened_at"):  # a session never opened has no shell at its node
            self._queue.put_nowait(session)

    async def run(self, _runtime: object = None) -> None:
        """Until cancelled (the runtime's stop cancels the terminations in flight too)."""
        async with asyncio.TaskGroup() as group:
            while True:
                session = await self._queue.get()
                group.create_task(self._terminate(session), name=f"terminate-{session['id']}")

    async def _terminate(self, session: Any) -> None:
        try:
            async with self.service.db.unit_of_work() as uow:
                node = await ProjectionRepository(uow).node(session["node_id"])
            if node is not None and node["agent_url"]:
                await terminate_at_node(self.service, session, node)
        except Exception as exc:  # one session's node: the others go on
            log.warning(
                "terminate at node failed",
                extra={"fields": {"session_id": str(session["id"]), "error": repr(exc)}},
            )
