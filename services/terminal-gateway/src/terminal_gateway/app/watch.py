"""What ends sessions from outside their relay, within about a second, by events:

- PostgreSQL NOTIFY `terminal_session` (sent by every transition and revocation, delivered
  on commit) wakes this replica's relay of that session, which re-reads it: revoked ->
  it ends the shell and tells the user; taken over elsewhere -> it lets go.
- iam's membership events, through the kit's in-memory membership projection (the one the
  token verifier uses): after each poll that changed a user's memberships, that user's
  live sessions are re-checked with the roles that allowed them, as restricted now; a
  session whose user lost `workload.manage` in its project is revoked
  (`membership_revoked`). When the projection has caught up after a start, every live
  session is checked once (a revocation may have happened while this replica was down).
  Every replica does this; the state machine makes the second revocation a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from platformkit.listen import Listener
from terminal_gateway.app.relay import RelayRegistry
from terminal_gateway.app.sessions import SessionService, still_allowed
from terminal_gateway.domain.sessions import Reason
from terminal_gateway.store.repository import NOTIFY_CHANNEL, SessionRepository

log = logging.getLogger(__name__)
Holder = tuple[uuid.UUID, uuid.UUID]


class SessionWatch:
    def __init__(self, service: SessionService, registry: RelayRegistry, memberships: Any) -> None:
        self.service = service
        self.registry = registry
        self.memberships = memberships
        self.listener = Listener(service.db.url, NOTIFY_CHANNEL, self._notified, self._gap)
        self._changed: asyncio.Queue[set[Holder] | None] = asyncio.Queue()
        self._checked_all = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.listener.start()
        if self.memberships is not None:
            self.memberships.listeners.append(self._memberships_changed)
            self._task = asyncio.get_running_loop().create_task(self._recheck_forever())

    async def stop(self) -> None:
        if self.memberships is not None and self._memberships_changed in self.memberships.listeners:
            self.memberships.listeners.remove(self._memberships_changed)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.listener.stop()

    def _notified(self, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self.registry.poke(uuid.UUID(payload))

    def _gap(self) -> None:
        for session_id in list(self.registry.relays):
            self.registry.poke(session_id)

    def _memberships_changed(self, changed: set[Holder]) -> None:
        if not self.memberships.ready:
            return
        if not self._checked_all:
            self._checked_all = True
            self._changed.put_nowait(None)  # None: every live session
        elif changed:
            self._changed.put_nowait(changed)

    async def _recheck_forever(self) -> None:
        while True:
            changed = await self._changed.get()
            try:
                await self.recheck(changed)
            except Exception as exc:
                log.warning("membership re-check failed", extra={"fields": {"error": repr(exc)}})
                await asyncio.sleep(0.5)
                self._changed.put_nowait(changed)

    async def recheck(self, changed: set[Holder] | None) -> int:
        """Revoke the live sessions (of `changed` holders; all when None) whose user no
        longer holds workload.manage in the session's project."""
        revoked = 0
        async with self.service.db.unit_of_work() as uow:
            sessions = SessionRepository(uow)
            if changed is None:
                candidates = await sessions.all_live()
            else:
                candidates = []
                for tenant_id, user_id in changed:
                    candidates += await sessions.live_of_user(tenant_id, user_id)
            lost = [s for s in candidates if not still_allowed(s, self.memberships)]
            if lost:
                locked = await sessions.live("id = ANY(:ids)", {"ids": [s["id"] for s in lost]})
                revoked = await self.service.revoke(uow, locked, Reason.MEMBERSHIP_REVOKED)
            await uow.commit()
        return revoked
