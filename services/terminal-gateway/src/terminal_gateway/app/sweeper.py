"""The periodic part, the `sweeper` job (every GPUCLOUD_TERMINAL_SWEEP_INTERVAL_S, 1 s; the
kit's job supervisor logs and retries a failed sweep): time-based transitions and the
relays' leases.

- a minted session whose connect token expired unused -> `expired` (`token_unused`);
- a detached session past its grace window -> `expired` (`grace_passed`);
- an open session whose relay stopped renewing its lease (that replica died) ->
  `detached` (`relay_lost`), or `revoked` when a revocation was pending;
- a live session whose allocation is no longer running -> revoked (the event path does
  this at once; this catches a session minted while a release was being applied);
- this replica's relays renew their leases.
Each step locks its rows with SKIP LOCKED, so replicas share the work.
"""

from __future__ import annotations

import datetime as dt

from terminal_gateway.app.relay import RelayRegistry
from terminal_gateway.app.sessions import SessionService, move, now_utc
from terminal_gateway.domain.sessions import Reason, SessionState
from terminal_gateway.store.repository import SessionRepository

TOKEN_LEEWAY_S = 5


async def sweep_once(service: SessionService, registry: RelayRegistry) -> int:
    settings = service.settings
    at = now_utc()
    await service.renew(registry.instances())
    moved = 0
    async with service.db.unit_of_work() as uow:
        sessions = SessionRepository(uow)
        for s in await sessions.live(
            "state = 'minted' AND token_expires_at < :t",
            {"t": at - dt.timedelta(seconds=TOKEN_LEEWAY_S)},
        ):
            await move(uow, s, SessionState.EXPIRED, at, reason=Reason.TOKEN_UNUSED.value)
            moved += 1
        for s in await sessions.live(
            "state = 'detached' AND detached_at + make_interval(secs => grace_s) < :t", {"t": at}
        ):
            await move(uow, s, SessionState.EXPIRED, at, reason=Reason.GRACE_PASSED.value)
            moved += 1
        for s in await sessions.live(
            "state = 'open' AND relay_seen_at < :t",
            {"t": at - dt.timedelta(seconds=settings.relay_lease_s)},
        ):
            if s["revoke_reason"]:
                await move(uow, s, SessionState.REVOKED, at, reason=s["revoke_reason"])
            else:
                await move(
                    uow, s, SessionState.DETACHED, at, reason=Reason.RELAY_LOST.value,
                    detached_at=at, relay_instance=None,
                )  # fmt: skip
            moved += 1
        orphans = await sessions.live(
            "NOT EXISTS (SELECT 1 FROM allocations a WHERE a.id = sessions.allocation_id"
            " AND a.state = 'running')",
            {},
        )
        moved += await service.revoke(uow, orphans, Reason.ALLOCATION_RELEASED)
        await uow.commit()
    return moved
