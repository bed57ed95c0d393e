"""The membership projection (no I/O: records are folded in directly) and the verifier's
use of it: roles revoked since the token was minted drop out, roles granted since never
get in, and nothing changes before the projection caught up."""

import datetime as dt
import json
import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given
from hypothesis import strategies as st
from jwt.algorithms import OKPAlgorithm

from platformkit.auth import OPERATOR, Principal
from platformkit.kafka import KafkaSettings
from platformkit.memberships import MEMBERSHIP_GRANTED, MEMBERSHIP_REVOKED, MembershipProjection
from platformkit.settings import ServiceSettings
from platformkit.tokens import AccessTokenVerifier, JwksCache

TENANT, USER, PROJECT, OTHER_PROJECT = (uuid.uuid4() for _ in range(4))

UNUSED = ServiceSettings("tests", kafka=KafkaSettings("unused:9092"))  # never connected


def _event(
    membership: uuid.UUID, role: str, *, project: uuid.UUID | None = None,
    user: uuid.UUID = USER, kind: str = "user", **extra,
) -> bytes:  # fmt: skip
    payload = {
        "membership_id": str(membership), "tenant_id": str(TENANT), "principal_id": str(user),
        "principal_kind": kind, "role": role,
        "granted_at": dt.datetime.now(dt.UTC).isoformat(), **extra,
    }  # fmt: skip
    if project is not None:
        payload["project_id"] = str(project)
    return json.dumps(payload).encode()


def _projection() -> MembershipProjection:
    projection = MembershipProjection(UNUSED)
    projection.ready = True
    return projection


def _user(roles=(), project_roles=None, subject: uuid.UUID = USER) -> Principal:
    return Principal(
        subject=str(subject), kind="user", tenant_id=TENANT, roles=frozenset(roles),
        project_roles={p: frozenset(r) for p, r in (project_roles or {}).items()},
    )  # fmt: skip


def test_grants_and_revocations_apply_in_order_per_scope():
    projection = _projection()
    owner, admin, project_admin = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    projection.apply(MEMBERSHIP_GRANTED, _event(owner, "owner"))
    projection.apply(MEMBERSHIP_GRANTED, _event(project_admin, "admin", project=PROJECT))
    assert projection.roles(TENANT, USER) == {"owner"}
    # A role change is a revoked + a granted event (one role per scope).
    projection.apply(MEMBERSHIP_REVOKED, _event(owner, "owner"))
    projection.apply(MEMBERSHIP_GRANTED, _event(admin, "admin"))
    assert projection.roles(TENANT, USER) == {"admin"}
    assert projection.roles(TENANT, USER, PROJECT) == {"admin"}
    assert projection.roles(TENANT, USER, OTHER_PROJECT) is None  # never seen
    assert projection.roles(TENANT, uuid.uuid4()) is None
    # Revoking the tenant role leaves the project role alone, and the other way round.
    projection.apply(MEMBERSHIP_REVOKED, _event(admin, "admin"))
    assert projection.roles(TENANT, USER) == frozenset()
    assert projection.roles(TENANT, USER, PROJECT) == {"admin"}
    projection.apply(MEMBERSHIP_REVOKED, _event(project_admin, "admin", project=PROJECT))
    assert projection.roles(TENANT, USER, PROJECT) == frozenset()


def test_redelivery_is_harmless_and_a_stale_grant_cannot_resurrect_a_revocation():
    projection = _projection()
    m = uuid.uuid4()
    granted, revoked = _event(m, "admin"), _event(m, "admin")
    for event_type, value in [
        (MEMBERSHIP_GRANTED, granted), (MEMBERSHIP_GRANTED, granted),
        (MEMBERSHIP_REVOKED, revoked), (MEMBERSHIP_GRANTED, granted),  # relay re-sent it
        (MEMBERSHIP_REVOKED, revoked),
    ]:  # fmt: skip
        projection.apply(event_type, value)
    assert projection.roles(TENANT, USER) == frozenset()


def test_other_events_service_accounts_and_garbage_are_ignored():
    projection = _projection()
    projection.apply("iam.tenant.created", _event(uuid.uuid4(), "owner"))
    projection.apply(MEMBERSHIP_GRANTED, b"not json")
    projection.apply(MEMBERSHIP_GRANTED, None)
    projection.apply(MEMBERSHIP_GRANTED, _event(uuid.uuid4(), "admin", kind="service_account"))
    assert projection.roles(TENANT, USER) is None and projection.applied == 0
    # Unknown fields are tolerated: iam may add some.
    projection.apply(MEMBERSHIP_GRANTED, _event(uuid.uuid4(), "viewer", a_future_field=1))
    assert projection.roles(TENANT, USER) == {"viewer"}


def test_restrict_drops_revoked_roles_and_never_adds_granted_ones():
    projection = _projection()
    admin, viewer, later = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    projection.apply(MEMBERSHIP_GRANTED, _event(admin, "admin"))
    projection.apply(MEMBERSHIP_GRANTED, _event(viewer, "viewer", project=PROJECT))
    token = _user({"admin"}, {PROJECT: {"viewer"}, OTHER_PROJECT: {"member"}})
    assert projection.restrict(token) == token
    projection.apply(MEMBERSHIP_REVOKED, _event(admin, "admin"))
    projection.apply(MEMBERSHIP_GRANTED, _event(later, "owner"))  # after the token: not added
    projection.apply(MEMBERSHIP_REVOKED, _event(viewer, "viewer", project=PROJECT))
    restricted = projection.restrict(token)
    assert restricted.roles == frozenset()
    # The revoked project drops out; a project the projection never heard of keeps the
    # token's roles (its grant may be older than the topic's retention).
    assert dict(restricted.project_roles) == {OTHER_PROJECT: {"member"}}
    assert restricted.subject == token.subject and restricted.tenant_id == TENANT


def test_restrict_leaves_unknown_holders_operators_and_service_accounts_alone():
    projection = _projection()
    projection.apply(MEMBERSHIP_REVOKED, _event(uuid.uuid4(), "admin"))
    stranger = _user({"admin"}, subject=uuid.uuid4())
    assert projection.restrict(stranger) is stranger
    account = Principal(
        subject=str(USER), kind="service_account", tenant_id=TENANT, roles=frozenset({"admin"}),
        project_ids=frozenset({PROJECT}),
    )  # fmt: skip
    assert projection.restrict(account) is account
    assert projection.restrict(OPERATOR) is OPERATOR
    enrollment = Principal(subject=str(USER), kind="user")  # restricted token: no tenant
    assert projection.restrict(enrollment) is enrollment


def test_before_catching_up_the_token_is_used_as_it_is():
    projection = MembershipProjection(UNUSED)
    projection.apply(MEMBERSHIP_REVOKED, _event(uuid.uuid4(), "admin"))
    token = _user({"admin"})
    assert projection.restrict(token) is token
    projection.ready = True
    assert projection.restrict(token).roles == frozenset()


_ROLES = st.sampled_from(["owner", "admin", "member", "viewer", "billing"])
_SCOPES = st.sampled_from([None, PROJECT, OTHER_PROJECT])


@given(
    history=st.lists(st.tuples(st.booleans(), st.integers(0, 5), _ROLES, _SCOPES), max_size=30),
    token_roles=st.frozensets(_ROLES),
    token_project_roles=st.frozensets(_ROLES),
)
def test_a_token_never_gains_a_role(history, token_roles, token_project_roles):
    projection = _projection()
    ids = [uuid.UUID(int=i + 1) for i in range(6)]
    for granted, index, role, scope in history:
        projection.apply(
            MEMBERSHIP_GRANTED if granted else MEMBERSHIP_REVOKED,
            _event(ids[index], role, project=scope),
        )
    token = _user(token_roles, {PROJECT: token_project_roles})
    restricted = projection.restrict(token)
    assert restricted.roles <= token.roles
    assert restricted.roles_in_project(PROJECT) <= token.roles_in_project(PROJECT)
    assert restricted.roles_in_project(OTHER_PROJECT) <= token.roles_in_project(OTHER_PROJECT)


async def test_the_verifier_intersects_user_tokens_with_the_projection():
    private = ed25519.Ed25519PrivateKey.generate()
    jwk = {**json.loads(OKPAlgorithm.to_jwk(private.public_key())), "kid": "k", "alg": "EdDSA"}

    class Source:
        async def fetch(self):
            return {"keys": [jwk]}

    projection = _projection()
    verifier = AccessTokenVerifier(
        JwksCache(Source()), issuer="iss", audience="aud", memberships=projection
    )
    now = int(time.time())
    claims = {
        "iss": "iss", "aud": "aud", "sub": str(USER), "kind": "user", "tenant": str(TENANT),
        "roles": ["admin"], "proj": {}, "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex,
    }  # fmt: skip
    token = jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": "k", "typ": "at+jwt"})
    admin = uuid.uuid4()
    projection.apply(MEMBERSHIP_GRANTED, _event(admin, "admin"))
    assert (await verifier.verify(token)).roles == {"admin"}
    projection.apply(MEMBERSHIP_REVOKED, _event(admin, "admin"))
    assert (await verifier.verify(token)).roles == frozenset()


def test_listeners_learn_which_holders_a_poll_changed():
    projection = MembershipProjection(UNUSED)
    seen: list[set] = []
    projection.listeners.append(seen.append)
    tenant, user, membership = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    body = (
        f'{{"membership_id": "{membership}", "tenant_id": "{tenant}", '
        f'"principal_id": "{user}", "role": "member"}}'
    ).encode()
    projection.apply(MEMBERSHIP_GRANTED, body)
    projection.apply(MEMBERSHIP_REVOKED, body)
    projection.after_poll()
    projection.after_poll()
    assert seen == [{(tenant, user)}, set()]
    assert projection.roles(tenant, user) == frozenset()
