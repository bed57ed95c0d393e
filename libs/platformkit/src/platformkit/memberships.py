"""Current memberships, projected in process from iam's events: a role taken away in iam
stops working across the fleet within seconds, not when the caller's token expires.

iam publishes `iam.membership.granted` / `iam.membership.revoked` on `iam.membership.v1`
(through its outbox, keyed by tenant id, so one tenant's changes stay in order). Every
service that verifies iam's tokens reads that topic with a group-less consumer (every
replica reads every partition from the beginning, nothing is committed; a restart replays)
and keeps, per (tenant, user), the roles of each scope: the tenant itself and each project.
The token verifier then intersects the token's roles with these (`restrict`):

- a role revoked after the token was minted is dropped;
- a role granted after it is NOT added: a token never gains power, the holder refreshes;
- a scope (the tenant, or one project) the projection has never seen an event for keeps
  the token's roles. iam's topics keep the broker's default retention, so the grant of a
  long-standing membership may be gone from the log; every revocation publishes an event
  for its scope, so a revocation is never missed this way;
- until the projection has caught up with the end offsets the topic had when it started
  (`ready`), the token's claims are used as they are: a service that just started must not
  refuse everyone while it replays.

Operators and service accounts are untouched (a service account's project binding comes
from its token, its key's revocation from `platformkit.revocations`); so are tokens
without a tenant (the MFA enrollment token).

A service that must act when a role goes away (terminal-gateway closes the shells it
allowed) adds a listener: after every poll it gets the (tenant, principal) pairs whose
memberships that poll changed (an empty set otherwise, so it also learns when `ready`
turns true). A role change (revoked + granted in one iam transaction) usually arrives in
one poll, so the listener sees its end result.

Redelivery is harmless: memberships are tracked by id, and a revoked membership id is
remembered so a stale duplicate of its grant arriving later cannot bring it back. The
payload is read leniently (only the fields used here), so iam can add fields.
"""

import dataclasses
import logging
import uuid
from collections.abc import Callable, Mapping

import msgspec

from platformkit.auth import Principal
from platformkit.consumers import TopicFeed
from platformkit.settings import ServiceSettings

log = logging.getLogger(__name__)

MEMBERSHIP_GRANTED = "iam.membership.granted"
MEMBERSHIP_REVOKED = "iam.membership.revoked"
USER = "user"


class _Change(msgspec.Struct):
    membership_id: uuid.UUID
    tenant_id: uuid.UUID
    principal_id: uuid.UUID
    role: str
    principal_kind: str = USER
    project_id: uuid.UUID | None = None


# A scope is the tenant (None) or one of its projects.
_Scope = uuid.UUID | None


@dataclasses.dataclass
class _Holder:
    """One (tenant, principal): the live memberships of every scope seen so far."""

    scopes: dict[_Scope, dict[uuid.UUID, str]] = dataclasses.field(default_factory=dict)

    def roles(self, scope: _Scope) -> frozenset[str] | None:
        """None: no event was ever seen for this scope (the token is trusted for it)."""
        live = self.scopes.get(scope)
        return None if live is None else frozenset(live.values())


class MembershipProjection(TopicFeed):
    name = "membership projection"
    event_type = MEMBERSHIP_GRANTED

    def __init__(self, settings: ServiceSettings) -> None:
        super().__init__(settings)
        self._holders: dict[tuple[uuid.UUID, uuid.UUID], _Holder] = {}
        # Revoked membership ids: a redelivered grant of one must not resurrect it.
        self._revoked: set[uuid.UUID] = set()
        self.applied = 0  # `ready`: the replay reached the topic's end offsets at start-up
        self._changed: set[tuple[uuid.UUID, uuid.UUID]] = set()
        self.listeners: list[Callable[[set[tuple[uuid.UUID, uuid.UUID]]], None]] = []

    # -- the fold -----------------------------------------------------------------------

    def apply(self, event_type: str | None, value: bytes | None) -> None:
        """Fold one record in, in topic order (other event types are ignored)."""
        if event_type not in (MEMBERSHIP_GRANTED, MEMBERSHIP_REVOKED) or not value:
            return
        try:
            change = msgspec.json.decode(value, type=_Change)
        except msgspec.DecodeError:
            log.warning("unreadable membership event skipped")
            return
        if change.principal_kind != USER:
            return  # service accounts are bound by their token (and their key's revocation)
        holder = self._holders.setdefault((change.tenant_id, change.principal_id), _Holder())
        live = holder.scopes.setdefault(change.project_id, {})
        if event_type == MEMBERSHIP_REVOKED:
            self._revoked.add(change.membership_id)
            live.pop(change.membership_id, None)
        elif change.membership_id not in self._revoked:
            live[change.membership_id] = change.role
        self.applied += 1
        self._changed.add((change.tenant_id, change.principal_id))

    def after_poll(self) -> None:
        changed, self._changed = self._changed, set()
        for listener in self.listeners:
            try:
                listener(changed)
            except Exception:
                log.exception("membership listener failed")

    def roles(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, project_id: uuid.UUID | None = None
    ) -> frozenset[str] | None:
        """The user's current roles in the tenant (or one project); None when unknown."""
        holder = self._holders.get((tenant_id, user_id))
        return None if holder is None else holder.roles(project_id)

    def restrict(self, principal: Principal) -> Principal:
        """The principal with the roles it still holds; never a role its token lacks."""
        if not self.ready or principal.kind != USER or principal.tenant_id is None:
            return principal
        try:
            user_id = uuid.UUID(principal.subject)
        except ValueError:
            return principal
        holder = self._holders.get((principal.tenant_id, user_id))
        if holder is None:
            return principal
        roles = _intersect(principal.roles, holder.roles(None))
        project_roles: Mapping[uuid.UUID, frozenset[str]] = {
            project: _intersect(held, holder.roles(project))
            for project, held in principal.project_roles.items()
        }
        return dataclasses.replace(
            principal,
            roles=roles,
            project_roles={p: r for p, r in project_roles.items() if r},
        )


def _intersect(held: frozenset[str], current: frozenset[str] | None) -> frozenset[str]:
    return held if current is None else held & current
