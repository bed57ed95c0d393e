"""Terminal session use cases: mint, attach token, open (connect), detach, end, revoke.
Each opens one transaction; every state change goes through domain.sessions.transition
and writes its event to the outbox in the same transaction.

Authorization is local (no call to iam on the request path): the allocation, its node and
its tenant come from this service's projections of gpuaas's and iam's events, the caller's
roles from the access token as restricted by the kit's membership projection; the tenant's
MFA policy is this service's own table.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Callable
from typing import Any

from gpucloud_contracts.events.terminal import PolicyChanged, SessionChanged
from platformkit.auth import Principal
from platformkit.db import Database, UnitOfWork
from platformkit.errors import (
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
)
from platformkit.idempotency import IdempotentRequest, StoredResponse, run_once
from platformkit.ids import uuid7
from terminal_gateway.app.events import EVENTS
from terminal_gateway.app.keys import KeyStore
from terminal_gateway.domain import access
from terminal_gateway.domain.access import TerminalPolicy
from terminal_gateway.domain.sessions import (
    FINAL,
    POLICY_CHANGED,
    Kind,
    Reason,
    SessionState,
    Via,
    ending_state,
    transition,
)
from terminal_gateway.domain.tokens import SessionGrant
from terminal_gateway.settings import TerminalSettings
from terminal_gateway.store.repository import (
    PolicyRepository,
    ProjectionRepository,
    RecordingRepository,
    SessionRepository,
)

log = logging.getLogger(__name__)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass(frozen=True)
class Minted:
    session: Any
    token: str
    connect_url: str
    expires_at: dt.datetime


class MembershipCheck:
    """What the kit's membership projection offers (platformkit.memberships)."""

    ready: bool

    def restrict(self, principal: Principal) -> Principal:  # pragma: no cover - protocol
        raise NotImplementedError


def principal_of(session: Any) -> Principal:
    """The session's user with the roles that allowed it (re-checked while it lives)."""
    return Principal(
        subject=str(session["user_id"]),
        kind="user",
        tenant_id=session["tenant_id"],
        roles=frozenset(session["tenant_roles"]),
        project_roles={session["project_id"]: frozenset(session["project_roles"])},
    )


def _session_reference(session_id: uuid.UUID) -> StoredResponse:
    """What an Idempotency-Key stores for a minted session: its id (a reference)."""
    return StoredResponse(201, str(session_id).encode())


def still_allowed(session: Any, memberships: MembershipCheck | None) -> bool:
    """Whether the session's user still holds `workload.manage` in its project, as far as
    iam's membership events say (without a projection: as when it was opened)."""
    principal = principal_of(session)
    if memberships is not None:
        principal = memberships.restrict(principal)
    return access.may_open(principal.roles, principal.project_roles, session["project_id"])


async def _event(
    uow: UnitOfWork, session: dict[str, Any], previous: str | None, at: dt.datetime
) -> None:
    event_type = transition(previous, session["state"]) if previous else "terminal.session.minted"
    duration = None
    if session["state"] in FINAL and session.get("opened_at"):
        duration = max(0, int((at - session["opened_at"]).total_seconds() * 1000))
    await EVENTS.add_event(
        uow, event_type, subject=str(session["id"]), tenant=str(session["tenant_id"]),
        payload=SessionChanged(
            session_id=session["id"], tenant_id=session["tenant_id"],
            project_id=session["project_id"], allocation_id=session["allocation_id"],
            node_id=session["node_id"], user_id=session["user_id"], via=session["via"],
            kind=session["kind"], state=session["state"], previous_state=previous,
            reason=session.get("reason") or None,
            client_address=(session.get("client_address") or None),
            forward_port=session.get("forward_port"),
            attachments=session.get("attachments", 0), minted_at=session["minted_at"],
            opened_at=session.get("opened_at"), ended_at=session.get("ended_at"),
            duration_ms=duration, recording_digest=session.get("recording_digest"),
            recording_bytes=session.get("recording_bytes") if session["state"] in FINAL else None,
            occurred_at=at,
        ),
    )  # fmt: skip


async def move(
    uow: UnitOfWork, session: Any, target: SessionState, at: dt.datetime, **changes: Any
) -> dict[str, Any]:
    """Move a (locked) session to `target`: the row, its event and a wake-up for the replica
    that relays it, in the caller's transaction."""
    previous = session["state"]
    transition(previous, target)  # raises IllegalTransition
    changes = {"state": target.value, "updated_at": at, **changes}
    if target in FINAL:
        changes.setdefault("ended_at", at)
        digest, size = await RecordingRepository(uow).digest(session["id"])
        if size:
            changes.update(recording_digest=digest, recording_bytes=size)
        changes.update(relay_instance=None)
    await SessionRepository(uow).update(session["id"], **changes)
    updated = {**dict(session), **changes}
    await _event(uow, updated, previous, at)
    await SessionRepository(uow).notify(session["id"])
    return updated


class SessionService:
    def __init__(self, settings: TerminalSettings) -> None:
        self.settings = settings
        self.db: Database
        self.keys: KeyStore
        self.memberships: MembershipCheck | None = None
        # Called after a commit that revoked a detached session: end its shell at the node.
        self.on_revoked_detached: Callable[[Any], None] = lambda _session: None

    def bind(self, db: Database, keys: KeyStore, memberships: MembershipCheck | None) -> None:
        """Wired at start-up (the consumers are declared before the database exists)."""
        self.db, self.keys, self.memberships = db, keys, memberships

    # -- minting ----------------------------------------------------------------------------

    async def authorize(
        self, uow: UnitOfWork, principal: Principal, allocation_id: uuid.UUID
    ) -> tuple[Any, Any, TerminalPolicy]:
        """The allocation, its node and the tenant policy, once `principal` may open a
        terminal on it; otherwise the problem (404 foreign, 403 role, 409 state, 401 step-up)."""
        allocation = await ProjectionRepository(uow).allocation(allocation_id, share=True)
        if allocation is None:
            raise NotFound("no such allocation")
        principal.require_tenant(allocation["tenant_id"])
        principal.require_project(allocation["project_id"])
        if principal.kind != "user":
            raise Forbidden(
                "terminal sessions are opened by users, not service accounts or operators"
            )
        if not access.may_open(principal.roles, principal.project_roles, allocation["project_id"]):
            raise Forbidden("your role does not allow workload.manage in this project")
        if (
            await ProjectionRepository(uow).tenant_status(allocation["tenant_id"], share=True)
            == "suspended"
        ):
            raise Forbidden("the tenant is suspended")
        if allocation["state"] != "running":
            raise Conflict(f"the allocation is {allocation['state']}, not running")
        policy = await self.policy(uow, allocation["tenant_id"])
        if policy.require_mfa:
            principal.require_recent_mfa(self.settings.mfa_max_age_s)
        node = (
            await ProjectionRepository(uow).node(allocation["node_id"])
            if allocation["node_id"]
            else None
        )
        if node is None or not node["agent_url"]:
            raise ServiceUnavailable("the allocation's node is not known here yet; retry shortly")
        return allocation, node, policy

    async def policy(self, uow: UnitOfWork, tenant_id: uuid.UUID) -> TerminalPolicy:
        row = await PolicyRepository(uow).get(tenant_id)
        return (
            TerminalPolicy(row["require_mfa"], row["idle_timeout_s"]) if row else TerminalPolicy()
        )

    async def mint(
        self,
        principal: Principal,
        allocation_id: uuid.UUID,
        *,
        via: Via = Via.BROWSER,
        kind: Kind = Kind.SHELL,
        command: str | None = None,
        pty: bool = True,
        forward_port: int | None = None,
        client_address: str | None = None,
        idempotency_key: str | None = None,
    ) -> Minted:
        # The Idempotency-Key's stored answer is the session's id, never its token (a live
        # credential in a table): a replay mints a fresh token for the same session while
        # it is still unused, and refuses once it was opened.
        request = IdempotentRequest.of(
            f"terminal.sessions:{principal.subject}", idempotency_key,
            [str(allocation_id), via, kind, command, forward_port],
        )  # fmt: skip
        minted: list[Minted] = []

        async def create(uow: UnitOfWork) -> uuid.UUID:
            allocation, node, policy = await self.authorize(uow, principal, allocation_id)
            minted.append(
                await self._create(
                    uow, principal, uuid.UUID(principal.subject), allocation, node, policy,
                    via=via, kind=kind, command=command, pty=pty, forward_port=forward_port,
                    client_address=client_address,
                )
            )  # fmt: skip
            return minted[0].session["id"]

        reply = await run_once(self.db, request, create, _session_reference)
        if not reply.replayed:
            return minted[0]
        return await self._replayed(principal, allocation_id, uuid.UUID(reply.body.decode()))

    async def _create(
        self, uow: UnitOfWork, principal: Principal, user_id: uuid.UUID, allocation: Any,
        node: Any, policy: TerminalPolicy, *, via: Via, kind: Kind, command: str | None,
        pty: bool, forward_port: int | None, client_address: str | None,
    ) -> Minted:  # fmt: skip
        at = now_utc()
        session_id = uuid7()
        grant = self._grant(
            session_id, user_id, allocation, node, policy, kind, command, forward_port, pty
        )
        token, jti, expires = self.keys.session_token(grant, self.settings.token_ttl_s)
        row = {
            "id": session_id, "tenant_id": allocation["tenant_id"],
            "project_id": allocation["project_id"], "allocation_id": allocation["id"],
            "node_id": allocation["node_id"], "user_id": user_id, "via": via.value,
            "kind": kind.value, "command": command, "forward_port": forward_port,
            "state": SessionState.MINTED.value,
            "tenant_roles": sorted(principal.roles),
            "project_roles": sorted(principal.project_roles.get(allocation["project_id"], ())),
            "client_address": client_address, "token_id": jti,
            "token_expires_at": dt.datetime.fromtimestamp(expires, dt.UTC),
            "grace_s": grant.grace_s, "idle_timeout_s": grant.idle_s,
            "minted_at": at, "updated_at": at,
        }  # fmt: skip
        await SessionRepository(uow).add(row)
        await _event(uow, {**row, "attachments": 0}, None, at)
        return Minted(row, token, self.connect_url(session_id), row["token_expires_at"])

    async def _replayed(
        self, principal: Principal, allocation_id: uuid.UUID, session_id: uuid.UUID
    ) -> Minted:
        """The session a repeated Idempotency-Key made, with a fresh token while unused."""
        async with self.db.unit_of_work() as uow:
            _, node, _ = await self.authorize(uow, principal, allocation_id)
            existing = await SessionRepository(uow).get(session_id, lock=True)
            if existing is None:
                raise NotFound("no such session")
            if existing["state"] != SessionState.MINTED or existing["token_used_at"]:
                raise Conflict("the session of this Idempotency-Key was already opened")
            minted = await self._new_token(uow, existing, node)
            await uow.commit()
        return minted

    def _grant(
        self, session_id: uuid.UUID, user_id: uuid.UUID, allocation: Any, node: Any,
        policy: TerminalPolicy, kind: Kind, command: str | None, port: int | None,
        pty: bool = True,
    ) -> SessionGrant:  # fmt: skip
        return SessionGrant(
            session_id=session_id, user_id=user_id, tenant_id=allocation["tenant_id"],
            allocation_id=allocation["id"], node_name=node["name"], kind=kind.value,
            command=command, pty=pty, port=port, grace_s=self.settings.grace_s,
            idle_s=policy.idle_timeout(self.settings.idle_timeout_s) or None,
        )  # fmt: skip

    def grant_for(self, session: Any, node: Any, *, pty: bool = True) -> SessionGrant:
        return SessionGrant(
            session_id=session["id"], user_id=session["user_id"], tenant_id=session["tenant_id"],
            allocation_id=session["allocation_id"], node_name=node["name"], kind=session["kind"],
            command=session["command"], pty=pty, port=session["forward_port"],
            grace_s=session["grace_s"], idle_s=session["idle_timeout_s"],
        )  # fmt: skip

    async def _new_token(self, uow: UnitOfWork, session: Any, node: Any) -> Minted:
        """A fresh single-use connect token for the session; the previous one stops working."""
        token, jti, expires = self.keys.session_token(
            self.grant_for(session, node), self.settings.token_ttl_s
        )
        expires_at = dt.datetime.fromtimestamp(expires, dt.UTC)
        await SessionRepository(uow).update(
            session["id"], token_id=jti, token_expires_at=expires_at, token_used_at=None,
            updated_at=now_utc(),
        )  # fmt: skip
        return Minted(
            {**dict(session), "token_id": jti}, token, self.connect_url(session["id"]), expires_at
        )

    async def attach_token(self, principal: Principal, session_id: uuid.UUID) -> Minted:
        """A fresh token to reattach to one's own open or detached session."""
        async with self.db.unit_of_work() as uow:
            session = await SessionRepository(uow).get(session_id, lock=True)
            if (
                session is None
                or str(session["user_id"]) != principal.subject
                or (principal.tenant_id != session["tenant_id"])
            ):
                raise NotFound("no such session")
            if session["state"] in FINAL or session["revoke_reason"]:
                raise Conflict(f"the session is {session['state']}")
            _, node, _ = await self.authorize(uow, principal, session["allocation_id"])
            minted = await self._new_token(uow, session, node)
            await uow.commit()
        return minted

    def connect_url(self, session_id: uuid.UUID) -> str:
        return f"{self.settings.public_url}/v1/terminal/sessions/{session_id}/connect"

    # -- the relay's transitions --------------------------------------------------------------

    async def open(
        self, session_id: uuid.UUID, token_id: uuid.UUID, instance: str, client_address: str | None
    ) -> tuple[Any, Any]:
        """Spend the connect token and open (or reattach) the session; the session and its
        node. Problems: 404 unknown, 401 token spent or superseded, 409 not attachable."""
        at = now_utc()
        async with self.db.unit_of_work() as uow:
            sessions = SessionRepository(uow)
            session = await sessions.get(session_id, lock=True)
            if session is None:
                raise NotFound("no such session")
            if session["state"] in FINAL or session["revoke_reason"]:
                raise Conflict(f"the session is {session['state']}")
            if session["token_id"] != token_id:
                raise Unauthorized("the connect token was replaced by a newer one")
            if not await sessions.use_token(session_id, token_id, at):
                raise Unauthorized("the connect token was already used")
            if not still_allowed(session, self.memberships):
                raise Forbidden("your access to this project was revoked")
            projections = ProjectionRepository(uow)
            allocation = await projections.allocation(session["allocation_id"], share=True)
            if allocation is None or allocation["state"] != "running":
                raise Conflict("the allocation is no longer running")
            if await projections.tenant_status(session["tenant_id"], share=True) == "suspended":
                raise Forbidden("the tenant is suspended")
            node = await projections.node(session["node_id"])
            if node is None or not node["agent_url"]:
                raise ServiceUnavailable("the allocation's node is not known here")
            opened = await move(
                uow, session, SessionState.OPEN, at,
                attachments=session["attachments"] + 1, opened_at=session["opened_at"] or at,
                detached_at=None, reason=None, relay_instance=instance, relay_seen_at=at,
                client_address=client_address or session["client_address"],
            )  # fmt: skip
            await uow.commit()
        return opened, node

    async def detach(self, session_id: uuid.UUID, instance: str, reason: Reason) -> None:
        """The relay lost its client or the node: the shell waits for a reattach."""
        at = now_utc()
        async with self.db.unit_of_work() as uow:
            session = await SessionRepository(uow).get(session_id, lock=True)
            if session is None or session["state"] != SessionState.OPEN:
                return
            if session["relay_instance"] != instance:
                return  # another connection took the session over
            if session["revoke_reason"]:
                await move(uow, session, SessionState.REVOKED, at, reason=session["revoke_reason"])
            else:
                await move(
                    uow, session, SessionState.DETACHED, at, reason=reason.value,
                    detached_at=at, relay_instance=None,
                )  # fmt: skip
            await uow.commit()

    async def end(self, session_id: uuid.UUID, reason: str, instance: str | None = None) -> Any:
        """End the session (its final state follows from the reason, or `revoked` when a
        revocation was pending); its recording digest is taken as stored now."""
        at = now_utc()
        async with self.db.unit_of_work() as uow:
            session = await SessionRepository(uow).get(session_id, lock=True)
            if session is None or session["state"] in FINAL:
                return session
            if (
                instance is not None
                and session["state"] == SessionState.OPEN
                and session["relay_instance"] != instance
            ):
                return session  # taken over: the other relay ends it
            if session["revoke_reason"]:
                target, reason = SessionState.REVOKED, session["revoke_reason"]
            else:
                target = ending_state(reason)
                if target == SessionState.EXPIRED and session["state"] == SessionState.OPEN:
                    target = SessionState.CLOSED  # only unattached sessions expire
            ended = await move(uow, session, target, at, reason=reason)
            await uow.commit()
        return ended

    async def renew(self, instances: list[str]) -> None:
        if not instances:
            return
        async with self.db.unit_of_work() as uow:
            await SessionRepository(uow).renew_relays(instances, now_utc())
            await uow.commit()

    async def state(self, session_id: uuid.UUID) -> Any:
        async with self.db.unit_of_work() as uow:
            return await SessionRepository(uow).get(session_id)

    # -- revocation ---------------------------------------------------------------------------

    async def revoke(self, uow: UnitOfWork, sessions: list[Any], reason: Reason) -> int:
        """Revoke live sessions in the caller's transaction. One relayed now (`open`) is
        marked and its relay woken: it tells the user, ends the shell and writes the final
        state with the complete recording's digest. Others move to `revoked` at once; a
        detached one's shell is ended at the node after the commit."""
        at = now_utc()
        count = 0
        for session in sessions:
            if session["state"] in FINAL:
                continue
            count += 1
            if session["state"] == SessionState.OPEN:
                if not session["revoke_reason"]:
                    await SessionRepository(uow).update(
                        session["id"], revoke_reason=reason.value, updated_at=at
                    )
                    await SessionRepository(uow).notify(session["id"])
                continue
            revoked = await move(uow, session, SessionState.REVOKED, at, reason=reason.value)
            if session["state"] == SessionState.DETACHED:
                uow.after_commit(lambda revoked=revoked: self.on_revoked_detached(revoked))
        return count

    async def kill(self, principal: Principal, tenant_id: uuid.UUID, session_id: uuid.UUID) -> None:
        """A tenant admin or the operator ends a session."""
        async with self.db.unit_of_work() as uow:
            session = await SessionRepository(uow).get(session_id, lock=True)
            if session is None or session["tenant_id"] != tenant_id:
                raise NotFound("no such session")
            if session["state"] in FINAL:
                raise Conflict(f"the session is already {session['state']}")
            await self.revoke(uow, [session], Reason.KILLED)
            await uow.commit()

    # -- policy -------------------------------------------------------------------------------

    async def set_policy(
        self,
        principal: Principal,
        tenant_id: uuid.UUID,
        require_mfa: bool,
        idle_timeout_s: int | None,
    ) -> TerminalPolicy:
        if idle_timeout_s is not None and not (
            access.MIN_IDLE_TIMEOUT_S <= idle_timeout_s <= access.MAX_IDLE_TIMEOUT_S
        ):
            raise ValidationFailed.for_field("idle_timeout_s", "must be 60 to 86400 seconds")
        at = now_utc()
        by = uuid.UUID(principal.subject) if principal.kind == "user" else None
        async with self.db.unit_of_work() as uow:
            await PolicyRepository(uow).put(tenant_id, require_mfa, idle_timeout_s, at, by)
            await EVENTS.add_event(
                uow, POLICY_CHANGED, subject=str(tenant_id), tenant=str(tenant_id),
                payload=PolicyChanged(
                    tenant_id=tenant_id, require_mfa=require_mfa, idle_timeout_s=idle_timeout_s,
                    changed_at=at, changed_by=by,
                ),
            )  # fmt: skip
            await uow.commit()
        return TerminalPolicy(require_mfa, idle_timeout_s)

    async def get_policy(self, tenant_id: uuid.UUID) -> TerminalPolicy:
        async with self.db.unit_of_work() as uow:
            return await self.policy(uow, tenant_id)
