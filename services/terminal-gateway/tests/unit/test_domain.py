import json
import uuid

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal_gateway.domain import access, asciicast, tokens
from terminal_gateway.domain.sessions import (
    FINAL,
    IllegalTransition,
    SessionState,
    ending_state,
    transition,
)

S = SessionState


class TestSessionStateMachine:
    @pytest.mark.parametrize(
        ("current", "target", "event"),
        [
            (S.MINTED, S.OPEN, "terminal.session.opened"),
            (S.OPEN, S.DETACHED, "terminal.session.detached"),
            (S.DETACHED, S.OPEN, "terminal.session.opened"),
            (S.OPEN, S.OPEN, "terminal.session.opened"),
            (S.OPEN, S.CLOSED, "terminal.session.closed"),
            (S.MINTED, S.EXPIRED, "terminal.session.expired"),
            (S.DETACHED, S.EXPIRED, "terminal.session.expired"),
            (S.DETACHED, S.REVOKED, "terminal.session.revoked"),
        ],
    )
    def test_allowed_moves_name_their_event(self, current, target, event):
        assert transition(current, target) == event

    @pytest.mark.parametrize(
        ("current", "target"),
        [(S.OPEN, S.EXPIRED), (S.MINTED, S.DETACHED), (S.CLOSED, S.OPEN), (S.REVOKED, S.OPEN),
         (S.EXPIRED, S.CLOSED), (S.DETACHED, S.MINTED)],
    )  # fmt: skip
    def test_everything_else_is_refused(self, current, target):
        with pytest.raises(IllegalTransition):
            transition(current, target)

    @given(st.sampled_from(list(S)), st.sampled_from(list(S)))
    def test_final_states_have_no_way_out(self, current, target):
        if current in FINAL:
            with pytest.raises(IllegalTransition):
                transition(current, target)

    def test_reasons_decide_the_final_state(self):
        assert ending_state("exited") == S.CLOSED
        assert ending_state("recording_failed") == S.CLOSED
        assert ending_state("grace_passed") == S.EXPIRED
        assert ending_state("allocation_released") == S.REVOKED
        assert ending_state("membership_revoked") == S.REVOKED


class TestAccess:
    project = uuid.uuid4()

    @pytest.mark.parametrize(
        ("tenant_roles", "project_roles", "allowed"),
        [({"owner"}, {}, True), ({"member"}, {}, True), ({"viewer"}, {}, False),
         ({"billing"}, {}, False), (set(), {"member"}, True), (set(), {"admin"}, True),
         (set(), {"viewer"}, False), ({"viewer"}, {"member"}, True)],
    )  # fmt: skip
    def test_workload_manage(self, tenant_roles, project_roles, allowed):
        held = {self.project: frozenset(project_roles)} if project_roles else {}
        assert access.may_open(frozenset(tenant_roles), held, self.project) is allowed

    def test_a_role_in_another_project_does_not_count(self):
        assert not access.may_open(frozenset(), {uuid.uuid4(): frozenset({"admin"})}, self.project)

    def test_the_policy_default_idle_timeout(self):
        assert access.TerminalPolicy().idle_timeout(3600) == 3600
        assert access.TerminalPolicy(idle_timeout_s=120).idle_timeout(3600) == 120


class TestAsciicast:
    def test_header_and_events_are_json_lines(self):
        header = json.loads(asciicast.header(80, 24, 1_700_000_000, "t"))
        assert header == {"version": 2, "width": 80, "height": 24, "timestamp": 1_700_000_000,
                          "title": "t", "env": {"TERM": "xterm-256color"}}  # fmt: skip
        e = asciicast.Encoder()
        assert json.loads(e.resize(1.5, 120, 40)) == [1.5, "r", "120x40"]
        assert json.loads(e.input(0.25, b"ls\r")) == [0.25, "i", "ls\r"]

    def test_a_character_split_across_reads_stays_whole(self):
        e = asciicast.Encoder()
        first, second = "é".encode()[:1], "é".encode()[1:]
        assert e.output(0.1, first) == b""  # nothing decodable yet
        assert json.loads(e.output(0.2, second)) == [0.2, "o", "é"]

    @given(st.binary(max_size=300), st.sampled_from([None, msgspec.json.encode]))
    def test_any_bytes_become_valid_json(self, data, dumps):
        e = asciicast.Encoder(dumps) if dumps else asciicast.Encoder()
        line = e.output(1.0, data)
        if line:
            seconds, code, text = json.loads(line)
            assert (seconds, code) == (1.0, "o") and isinstance(text, str)


class TestTokenClaims:
    grant = tokens.SessionGrant(
        session_id=uuid.uuid4(), user_id=uuid.uuid4(), tenant_id=uuid.uuid4(),
        allocation_id=uuid.uuid4(), node_name="node-a", grace_s=300, idle_s=600,
    )  # fmt: skip

    def test_a_session_token_is_bound_to_user_tenant_allocation_and_node(self):
        claims = tokens.session_claims(self.grant, issuer="tg", jti=uuid.uuid4(), now=100, ttl_s=60)
        assert claims["aud"] == "node:node-a" and claims["exp"] - claims["iat"] == 60
        assert (claims["sub"], claims["tenant"], claims["allocation_id"], claims["sid"]) == (
            str(self.grant.user_id), str(self.grant.tenant_id), str(self.grant.allocation_id),
            str(self.grant.session_id),
        )  # fmt: skip
        assert claims["idle_s"] == 600 and claims["mode"] == "shell"

    def test_no_session_token_lives_longer_than_60_s(self):
        with pytest.raises(ValueError):
            tokens.session_claims(self.grant, issuer="tg", jti=uuid.uuid4(), now=0, ttl_s=61)

    def test_the_relay_assertion_names_the_session_token(self):
        claims = tokens.relay_claims(
            issuer="tg", node_name="node-a", session_jti="j", jti=uuid.uuid4(), now=5
        )
        assert claims["session_jti"] == "j" and claims["aud"] == "node:node-a"
        assert claims["exp"] - claims["iat"] <= 60
