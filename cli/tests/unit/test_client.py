"""The client's request policy, against httpx's in-process MockTransport (no network):
what is retried, with which Idempotency-Key, and when a token is renewed."""

import json

import httpx
import pytest

from gpucloud_cli.sdk.client import Client, token_claims
from gpucloud_cli.sdk.errors import NetworkError, ProtocolError, ServerError, StepUpRequired

ALLOCATION = {
    "id": "a1",
    "tenant_id": "t1",
    "project_id": "p1",
    "sku": "h100-80gb",
    "mig_profile": None,
    "count": 1,
    "state": "scheduled",
    "price_key": "gpu:h100-80gb",
    "created_at": "2026-12-03T12:00:00Z",
    "updated_at": "2026-12-03T12:00:00Z",
    "instances": [],
    "a_field_added_later": True,
}


class Tokens:
    def __init__(self) -> None:
        self.current, self.renewals = "at-0", 0

    def token(self) -> str:
        return self.current

    def renew(self) -> bool:
        self.renewals += 1
        self.current = f"at-{self.renewals}"
        return True


def _client(handler, tokens=None) -> Client:
    return Client("http://gw.test", tokens or Tokens(), transport=httpx.MockTransport(handler))


def test_a_launch_retried_after_a_503_sends_the_same_idempotency_key(monkeypatch) -> None:
    monkeypatch.setattr("gpucloud_cli.sdk.client.RETRY_DELAYS_S", (0, 0))
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        if len(keys) == 1:
            return httpx.Response(503, json={"title": "Service unavailable", "status": 503})
        return httpx.Response(201, json=ALLOCATION)

    allocation = _client(handler).create_allocation("t1", "p1", "h100-80gb")
    assert allocation.id == "a1" and len(keys) == 2 and keys[0] == keys[1]


def test_the_token_endpoint_is_never_retried(monkeypatch) -> None:
    """A refresh token presented twice revokes its session at iam."""
    monkeypatch.setattr("gpucloud_cli.sdk.client.RETRY_DELAYS_S", (0, 0))
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(503, json={"title": "Service unavailable", "status": 503})

    with pytest.raises(ServerError):
        _client(handler).refresh_token_grant("gcr_x")
    assert calls == ["/v1/iam/token"]


def test_a_401_renews_the_token_once_and_repeats_the_call() -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        if request.headers["authorization"] == "Bearer at-0":
            return httpx.Response(401, json={"title": "Authentication required", "status": 401})
        return httpx.Response(200, json=ALLOCATION)

    tokens = Tokens()
    assert _client(handler, tokens).get_allocation("t1", "p1", "a1").state == "scheduled"
    assert seen == ["Bearer at-0", "Bearer at-1"] and tokens.renewals == 1


def test_a_step_up_challenge_is_not_answered_by_refreshing() -> None:
    """A refreshed token keeps its sign-in time: only a new sign-in with the second
    factor satisfies step-up."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401,
            headers={"www-authenticate": 'Bearer error="insufficient_user_authentication"'},
            json={"title": "Authentication required", "status": 401},
        )

    tokens = Tokens()
    with pytest.raises(StepUpRequired):
        _client(handler, tokens).create_service_account("t1", "p1", "ci")
    assert tokens.renewals == 0


def test_user_input_stays_inside_its_path_segment() -> None:
    paths = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path)
        return httpx.Response(200, json=ALLOCATION)

    _client(handler).get_allocation("t1", "p1", "../../nodes?x=1")
    assert paths == [b"/v1/gpu/tenants/t1/projects/p1/allocations/..%2F..%2Fnodes%3Fx%3D1"]


def test_pages_are_followed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "after" not in request.url.params:
            return httpx.Response(200, json={"items": [ALLOCATION], "next_after": "a1"})
        return httpx.Response(200, json={"items": [ALLOCATION | {"id": "a2"}], "next_after": None})

    assert [a.id for a in _client(handler).list_allocations("t1", "p1")] == ["a1", "a2"]


def test_no_answer_is_a_network_error(monkeypatch) -> None:
    monkeypatch.setattr("gpucloud_cli.sdk.client.RETRY_DELAYS_S", (0, 0))

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(NetworkError, match=r"gw\.test"):
        _client(handler).list_skus()


def test_an_answer_missing_a_field_is_a_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={k: v for k, v in ALLOCATION.items() if k != "state"})

    with pytest.raises(ProtocolError, match="state"):
        _client(handler).get_allocation("t1", "p1", "a1")


def test_token_claims_are_read_without_verifying() -> None:
    import base64

    payload = base64.urlsafe_b64encode(json.dumps({"tenant": "t1"}).encode()).rstrip(b"=")
    assert token_claims(f"h.{payload.decode()}.s") == {"tenant": "t1"}
    with pytest.raises(ProtocolError):
        token_claims("not-a-jwt")
