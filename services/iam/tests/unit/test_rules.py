"""Pure rules: the permission table, who may grant what, refresh-token judgement, throttling."""

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iam.app.throttle import LoginThrottle, TooManyAttempts, client_address
from iam.domain.permissions import PERMISSIONS, ROLES, Action, allows, may_grant
from iam.domain.tokens import RefreshOutcome, judge_refresh

roles = st.frozensets(st.sampled_from(ROLES))


class TestPermissions:
    def test_every_action_has_a_rule(self):
        assert set(PERMISSIONS) == set(Action)

    def test_operator_actions_allow_no_role(self):
        assert not allows(Action.OPERATE, frozenset(ROLES), frozenset(ROLES))

    @given(roles, roles)
    def test_more_roles_never_allow_less(self, some, more):
        for action in Action:
            if allows(action, some):
                assert allows(action, some | more)

    def test_owner_may_do_every_tenant_action(self):
        assert all(allows(a, frozenset({"owner"})) for a in Action if a != Action.OPERATE)

    def test_viewer_and_billing_cannot_manage(self):
        for role in ("viewer", "billing"):
            assert not allows(Action.MEMBER_MANAGE, frozenset({role}))
            assert not allows(Action.SERVICE_ACCOUNT_MANAGE, frozenset({role}))
        assert allows(Action.BILLING_MANAGE, frozenset({"billing"}))

    def test_project_roles_count_only_for_project_actions(self):
        assert allows(Action.PROJECT_READ, frozenset(), frozenset({"viewer"}))
        assert not allows(Action.TENANT_READ, frozenset(), frozenset({"admin"}))
        assert not allows(Action.PROJECT_CREATE, frozenset(), frozenset({"admin"}))

    @pytest.mark.parametrize(
        ("granter", "role", "allowed"),
        [("owner", "owner", True), ("admin", "owner", False), ("admin", "admin", True),
         ("member", "viewer", False), ("viewer", "viewer", False)],
    )  # fmt: skip
    def test_only_owners_make_owners(self, granter, role, allowed):
        assert may_grant(frozenset({granter}), role) is allowed


class TestRefreshJudgement:
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    later = now + dt.timedelta(days=1)

    def test_active_unexpired_rotates(self):
        assert judge_refresh("active", self.later, self.now) == RefreshOutcome.ROTATE

    def test_used_is_reuse(self):
        assert judge_refresh("used", self.later, self.now) == RefreshOutcome.REUSED

    def test_revoked_or_expired_is_refused(self):
        assert judge_refresh("revoked", self.later, self.now) == RefreshOutcome.REFUSED
        assert judge_refresh("active", self.now, self.now) == RefreshOutcome.REFUSED


class TestThrottle:
    def test_locks_the_account_for_that_address_until_the_window_passes(self):
        clock = [0.0]
        throttle = LoginThrottle(
            per_account_address=3, per_address=100, window_s=60, clock=lambda: clock[0]
        )
        for _ in range(3):
            throttle.check("a", "1.2.3.4")
            throttle.failed("a", "1.2.3.4")
        with pytest.raises(TooManyAttempts) as caught:
            throttle.check("a", "1.2.3.4")
        assert caught.value.status == 429 and int(caught.value.headers["Retry-After"]) > 0
        throttle.check("b", "1.2.3.4")  # another account from the same address is fine
        clock[0] = 61
        throttle.check("a", "1.2.3.4")

    def test_one_address_failing_does_not_lock_the_account_elsewhere(self):
        throttle = LoginThrottle(per_account_address=5, per_address=30, clock=lambda: 0.0)
        for _ in range(1000):
            throttle.failed("victim@x.test", "203.0.113.66")
        with pytest.raises(TooManyAttempts):
            throttle.check("victim@x.test", "203.0.113.66")
        throttle.check("victim@x.test", "198.51.100.7")

    def test_per_address_limit_spans_accounts(self):
        throttle = LoginThrottle(per_account_address=100, per_address=2, clock=lambda: 0.0)
        throttle.failed("a", "9.9.9.9")
        throttle.failed("b", "9.9.9.9")
        with pytest.raises(TooManyAttempts):
            throttle.check("c", "9.9.9.9")
        throttle.check("c", "9.9.9.8")

    def test_success_clears_the_account_for_that_address(self):
        throttle = LoginThrottle(per_account_address=1, per_address=100, clock=lambda: 0.0)
        throttle.failed("a", "x")
        throttle.succeeded("a", "x")
        throttle.check("a", "x")

    def test_memory_stays_bounded(self):
        clock = [0.0]
        throttle = LoginThrottle(
            window_s=60, max_keys=1_000, sweep_every=100, clock=lambda: clock[0]
        )
        for i in range(5_000):
            throttle.failed(f"user{i}", f"10.0.{i // 256}.{i % 256}")
            assert len(throttle) <= 1_000 + 2
        clock[0] = 120  # every entry expired: the next sweep forgets them all
        for _ in range(100):
            throttle.failed("late", "10.9.9.9")
        assert len(throttle) == 2


class TestClientAddress:
    TRUSTED = ("127.0.0.0/8",)

    def test_the_gateways_appended_entry_counts_not_the_clients(self):
        spoofed = "203.0.113.1, 198.51.100.2"
        assert client_address("127.0.0.1", spoofed, self.TRUSTED) == "198.51.100.2"

    def test_an_untrusted_peer_is_its_own_address(self):
        assert client_address("192.0.2.9", "203.0.113.1", self.TRUSTED) == "192.0.2.9"

    def test_two_hops_take_the_second_from_the_right(self):
        chain = "203.0.113.1, 198.51.100.2, 10.0.0.5"
        assert client_address("127.0.0.1", chain, self.TRUSTED, hops=2) == "198.51.100.2"

    def test_garbage_or_missing_header_falls_back_to_the_peer(self):
        assert client_address("127.0.0.1", "", self.TRUSTED) == "127.0.0.1"
        assert client_address("127.0.0.1", "not-an-ip", self.TRUSTED) == "127.0.0.1"
