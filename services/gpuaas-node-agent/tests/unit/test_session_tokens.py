import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node_agent.session_tokens import ReplayLedger, SessionTokenVerifier, node_audience
from node_agent.terminal import parse_control
from platformkit.tokens import AccessTokenVerifier, CallableJwks, InvalidToken, JwksCache

NODE = "node-a"


def _verifier(signer, **kwargs) -> SessionTokenVerifier:
    async def jwks():
        return signer.jwks()

    return SessionTokenVerifier(
        AccessTokenVerifier(
            JwksCache(CallableJwks(jwks)),
            issuer="terminal-gateway",
            audience=node_audience(NODE),
            token_types=("terminal+jwt",),
        ),
        **kwargs,
    )


class TestSessionTokenVerifier:
    async def test_a_valid_token_grants_its_allocation_once(self, signer):
        verifier = _verifier(signer)
        token = signer.token(NODE, "alloc-1")
        grant = await verifier.verify(token)
        assert grant.allocation_id == "alloc-1" and grant.user and grant.tenant
        with pytest.raises(InvalidToken, match="already used"):
            await verifier.verify(token)

    @pytest.mark.parametrize(
        ("overrides", "reason"),
        [
            ({"aud": "node:node-b"}, "not valid"),
            ({"aud": "gpucloud"}, "not valid"),
            ({"iss": "http://127.0.0.1:8080/v1/iam"}, "not valid"),
            ({"iat": int(time.time()) - 600, "exp": int(time.time()) - 300}, "expired"),
            ({"exp": int(time.time()) + 3600}, "lives too long"),
            ({"allocation_id": None}, "malformed"),
            ({"tenant": None}, "malformed"),
            ({"allocation_id": 7}, "malformed"),
            ({"jti": None}, "not valid"),
        ],
    )
    async def test_refused_claims(self, signer, overrides, reason):
        with pytest.raises(InvalidToken, match=reason):
            await _verifier(signer).verify(signer.token(NODE, "alloc-1", **overrides))

    async def test_an_iam_access_token_never_opens_a_terminal(self, signer):
        with pytest.raises(InvalidToken, match="not an access token"):
            await _verifier(signer).verify(signer.token(NODE, "alloc-1", typ="at+jwt"))

    async def test_a_token_signed_by_another_key_is_refused(self, signer, stranger):
        with pytest.raises(InvalidToken, match="unknown"):
            await _verifier(signer).verify(stranger.token(NODE, "alloc-1"))

    async def test_a_token_minted_before_the_agent_started_is_refused(self, signer):
        # After an agent restart the in-memory replay ledger is empty: older tokens stay out.
        verifier = _verifier(signer, not_before=time.time() + 30)
        with pytest.raises(InvalidToken, match="predates"):
            await verifier.verify(signer.token(NODE, "alloc-1"))


class TestReplayLedger:
    def test_ids_are_forgotten_only_after_they_expire(self):
        ledger = ReplayLedger()
        assert ledger.first_use("a", expires_at=100, now=0)
        assert not ledger.first_use("a", expires_at=100, now=50)
        assert ledger.first_use("b", expires_at=100, now=101)
        assert ledger.first_use("a", expires_at=300, now=101)  # "a" expired: purged


class TestControlMessages:
    def test_resize(self):
        assert parse_control('{"type": "resize", "cols": 120, "rows": 40}') == (120, 40)

    @pytest.mark.parametrize(
        "text",
        [
            "not json",
            "[]",
            '{"type": "resize", "cols": 0, "rows": 40}',
            '{"type": "resize", "cols": 120}',
            '{"type": "resize", "cols": true, "rows": 40}',
            '{"type": "resize", "cols": "120", "rows": 40}',
            '{"type": "signal", "name": "INT"}',
        ],
    )
    def test_anything_else_is_ignored(self, text):
        assert parse_control(text) is None

    @given(st.text())
    def test_never_raises(self, text):
        size = parse_control(text)
        assert size is None or all(1 <= v <= 1000 for v in size)
