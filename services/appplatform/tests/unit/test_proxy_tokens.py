"""The app-proxy token's claims: bound to one node, one allocation, one port or the logs,
at most 60 s."""

from __future__ import annotations

import uuid

import pytest

from appplatform.domain.proxy_tokens import proxy_claims


def claims(**overrides):
    values = dict(node_name="n1", allocation_id=uuid.UUID(int=5), port=8000, scope="port",
                  subject="user-1", jti=uuid.UUID(int=9), now=1000)  # fmt: skip
    values.update(overrides)
    return proxy_claims(**values)


def test_a_port_token_names_its_node_allocation_and_port() -> None:
    assert claims() == {
        "iss": "appplatform", "aud": "node:n1", "sub": "user-1",
        "allocation_id": str(uuid.UUID(int=5)), "port": 8000, "scope": "port",
        "jti": str(uuid.UUID(int=9)), "iat": 1000, "exp": 1030,
    }  # fmt: skip


def test_a_logs_token_carries_no_port() -> None:
    assert claims(scope="logs")["port"] == 0


@pytest.mark.parametrize("ttl_s", [0, 61, 3600])
def test_it_lives_at_most_60_seconds(ttl_s) -> None:
    with pytest.raises(ValueError, match="60 s"):
        claims(ttl_s=ttl_s)


def test_an_unknown_scope_is_refused() -> None:
    with pytest.raises(ValueError, match="scope"):
        claims(scope="shell")
