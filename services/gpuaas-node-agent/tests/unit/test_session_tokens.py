import time

import pytest

from node_agent.session_tokens import (
    RELAY_TOKEN_TYPE,
    SESSION_TOKEN_TYPE,
    ReplayLedger,
    SessionTokenVerifier,
    node_audience,
)
from platformkit.tokens import AccessTokenVerifier, CallableJwks, InvalidToken, JwksCache

NODE = "node-a"


def _verifier(signer, *, relay: bool = False, **kwargs) -> SessionTokenVerifier:
    async def jwks():
        return signer.jwks()

    keys = JwksCache(CallableJwks(jwks))

    def verifier(token_type: str) -> AccessTokenVerifier:
        return AccessTokenVerifier(
            keys, issuer="terminal-gateway", audience=node_audience(NODE), token_types=(token_type,)
        )

    return SessionTokenVerifier(
        verifier(SESSION_TOKEN_TYPE),
        relay_verifier=verifier(RELAY_TOKEN_TYPE) if relay else None,
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

    async def test_the_session_claims_come_with_the_grant(self, signer):
        token = signer.token(
            NODE, "alloc-1", sid="s-1", mode="exec", cmd="uname", pty=False, grace_s=0, idle_s=30
        )
        grant = await _verifier(signer).verify(token)
        assert (grant.session_id, grant.mode, grant.command, grant.pty) == (
            "s-1",
            "exec",
            "uname",
            False,
        )
        assert (grant.grace_s, grant.idle_s) == (0.0, 30.0)

    @pytest.mark.parametrize(
        "overrides",
        [{"mode": "root"}, {"mode": "exec"}, {"mode": "forward"}, {"mode": "forward", "port": 0},
         {"grace_s": -1}, {"idle_s": "soon"}],
    )  # fmt: skip
    async def test_malformed_session_claims_are_refused(self, signer, overrides):
        with pytest.raises(InvalidToken, match="malformed"):
            await _verifier(signer).verify(signer.token(NODE, "alloc-1", **overrides))


class TestRelayAssertion:
    """A session token alone opens nothing: only terminal-gateway's relay can."""

    async def test_the_relay_assertion_for_the_token_admits_it(self, signer):
        token = signer.token(NODE, "alloc-1")
        grant = await _verifier(signer, relay=True).verify(token, signer.relay(NODE, token))
        assert grant.allocation_id == "alloc-1"

    async def test_without_a_relay_assertion_the_token_is_refused(self, signer):
        with pytest.raises(InvalidToken, match="relay only"):
            await _verifier(signer, relay=True).verify(signer.token(NODE, "alloc-1"), None)

    @pytest.mark.parametrize(
        "overrides",
        [
            lambda: {"session_jti": "another"},
            # at run time, not at collection: a long suite would shrink the lifetime below
            # the bound before this runs (the test then could not fail as it should)
            lambda: {"exp": int(time.time()) + 300},
            lambda: {"aud": "node:node-b"},
        ],
        ids=["another-session", "lives-too-long", "another-node"],
    )
    async def test_a_wrong_relay_assertion_is_refused(self, signer, overrides):
        token = signer.token(NODE, "alloc-1")
        with pytest.raises(InvalidToken):
            await _verifier(signer, relay=True).verify(
                token, signer.relay(NODE, token, **overrides())
            )

    async def test_a_session_token_cannot_pose_as_a_relay_assertion(self, signer):
        token = signer.token(NODE, "alloc-1")
        with pytest.raises(InvalidToken, match="not an access token"):
            await _verifier(signer, relay=True).verify(token, signer.token(NODE, "alloc-1"))


class TestReplayLedger:
    def test_ids_are_forgotten_only_after_they_expire(self):
        ledger = ReplayLedger()
        assert ledger.first_use("a", expires_at=100, now=0)
        assert not ledger.first_use("a", expires_at=100, now=50)
        assert ledger.first_use("b", expires_at=100, now=101)
        assert ledger.first_use("a", expires_at=300, now=101)  # "a" expired: purged
