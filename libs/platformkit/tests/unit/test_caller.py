import datetime as dt
import uuid

from gpucloud_contracts.events.iam import MembershipRevoked
from platformkit.caller import Caller, client_address, current_caller
from platformkit.consumers import parse_record
from platformkit.outbox import EventPublisher

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_the_address_is_the_rightmost_forwarded_entry_else_the_peer():
    headers = [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.5"), (b"host", b"x")]
    assert client_address(headers, ("10.0.0.2", 5000)) == "203.0.113.5"
    assert client_address([], ("10.0.0.2", 5000)) == "10.0.0.2"
    assert client_address([], None) is None


def _revoked() -> MembershipRevoked:
    return MembershipRevoked(
        membership_id=uuid.uuid4(), tenant_id=uuid.uuid4(), principal_id=uuid.uuid4(),
        principal_kind="user", role="admin", revoked_at=NOW,
    )  # fmt: skip


def test_events_carry_the_request_s_caller_through_kafka_headers():
    events = EventPublisher("iam")
    token = current_caller.set(Caller("203.0.113.5", "user-1", "user"))
    try:
        event = events.event("iam.membership.revoked", subject="m", payload=_revoked())
    finally:
        current_caller.reset(token)
    assert (event.actor, event.actor_kind, event.client_address) == (
        "user-1",
        "user",
        "203.0.113.5",
    )
    back = parse_record(event.headers(), event.data)
    assert (back.actor, back.actor_kind, back.client_address) == ("user-1", "user", "203.0.113.5")
    outside = events.event("iam.membership.revoked", subject="m", payload=_revoked())
    assert (outside.actor, outside.client_address) == (None, None)
    assert "ce_actor" not in dict(outside.headers())
