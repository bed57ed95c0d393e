"""What ends sessions from outside their relay, within about a second, by events; two jobs
of the service's runtime:

- `session-wakeups` (`SessionWatch.listen`, one LISTEN session per run): PostgreSQL NOTIFY
  `terminal_session` (sent by every transition and revocation, delivered on commit) wakes
  this replica's relay of that session, which re-reads it: revoked -> it ends the shell and
  tells the user; taken over elsewhere -> it lets go. While the connection is down, and once
  it is back, every relay here re-reads its session (a notification may have been missed);
  the runtime reconnects with backoff.
- `membership-rechecks` (`SessionWatch.recheck_forever`): iam's membership events, through
  the kit's in-memory membership projection (the one the token verifier uses): after each
  poll that changed a user's memberships, that user's live sessions are re-checked with the
  roles that allowed them, as restricted now; a session whose user lost `workload.manage`
  in its project is revoked (`membership_revoked`). When the projection has caught up after
  a start, every live session is checked once (a revocation may have happened while this
  replica was down). Every replica does this; the state machine makes the second
  revocation a no-op. A re-check that fails is queued again and the job backs off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import psycopg

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
        self.listening = asyncio.Event()
        self._changed: asyncio.Queue[set[Holder] | None] = asyncio.Queue()
        self._checked_all = False
        if memberships is not None:
            memberships.listeners.append(self._memberships_changed)

    async def listen(self, _runtime: object = None) -> None:
        """Wake relays until the connection is lost (then return: the next session starts
        soon); raise when the database cannot be reached (the runtime backs off)."""
        try:
            conn = await psycopg.AsyncConnection.connect(self.service.db.url, autocommit=True)
        except Exception:
            self._gap()
            raise
        try:
            async with conn:
                await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                self.listening.set()
                self._gap()  # what changed before the LISTEN was in place
                async for note in conn.notifies():
                    with contextlib.suppress(ValueError):
                        self.registry.poke(uuid.UUID(note.payload))
        except Exception as exc:
            log.warning("session wakeups: listener lost", extra={"fields": {"error": repr(exc)}})
        finally:
            self.listening.clear()
            self._gap()

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

    async def recheck_forever(self, _runtime: object = None) -> None:
        while True:
            changed = await self._changed.get()
            try:
                await self.recheck(changed)
            except Exception:
                self._changed.put_nowait(changed)  # again, after the job's backoff
                raise

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
