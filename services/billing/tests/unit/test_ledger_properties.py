"""Property: any sequence of usage, top-ups, grants, expiries and reversals keeps every
transaction balanced, every cached balance equal to the one derived from the transfers,
and no promotional account below zero. Pure domain model, no I/O; the production posting
path (store/ledger.py's SQL on PostgreSQL) has its own property test in
tests/integration/test_ledger_posting_properties.py."""

import copy
import dataclasses
import datetime as dt
import uuid
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.domain.balance import Standing
from billing.domain.ledger import (
    Account,
    AccountKind,
    LedgerError,
    Transfer,
    TransferKind,
    apply_transfers,
    platform_account_id,
    reversing,
    split_charge,
    wallet_id,
)
from billing.domain.pricing import PriceBook, PriceVersion
from billing.domain.rating import TenantLedger, Usage, rate_usage

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CUR = "USD"
TENANTS = [uuid.UUID(int=i + 1) for i in range(2)]


@dataclasses.dataclass
class Model:
    accounts: dict[uuid.UUID, Account]
    transfers: list[Transfer] = dataclasses.field(default_factory=list)
    prices: PriceBook = dataclasses.field(
        default_factory=lambda: PriceBook([PriceVersion("gpu:a", CUR, 3_600_000, T0)])
    )
    clock: dt.datetime = T0
    n: int = 0

    @classmethod
    def new(cls) -> "Model":
        accounts = {}
        for kind in (AccountKind.REVENUE, AccountKind.CLEARING, AccountKind.PROMO_FUNDING):
            accounts[platform_account_id(kind, CUR)] = Account(
                platform_account_id(kind, CUR), kind, CUR
            )
        for t in TENANTS:
            accounts[wallet_id(t, CUR)] = Account(wallet_id(t, CUR), AccountKind.WALLET, CUR, t)
        return cls(accounts)

    def next_id(self) -> uuid.UUID:
        self.n += 1
        return uuid.UUID(int=10**6 + self.n)

    def post(self, transfers: list[Transfer]) -> None:
        """Atomic: validated on a copy, so a refused transaction leaves nothing."""
        known = {t.id for t in self.transfers}
        if any(t.id in known for t in transfers):
            raise LedgerError("duplicate transfer id")
        trial = copy.deepcopy(self.accounts)
        apply_transfers(trial, transfers)
        self.accounts = trial
        self.transfers.extend(transfers)

    def tenant(self, t: uuid.UUID) -> TenantLedger:
        grants = [
            a for a in self.accounts.values() if a.kind == AccountKind.PROMO and a.tenant_id == t
        ]
        return TenantLedger(t, CUR, 0, Standing.OK, 0, self.accounts[wallet_id(t, CUR)], grants)

    def simple(self, kind, debit, credit, amount, tenant) -> None:
        tx = self.next_id()
        self.post([Transfer(tx, tx, debit, credit, amount, CUR, kind, tenant, self.clock)])

    # operations -------------------------------------------------------------------------
    def usage(self, t: uuid.UUID, seconds: int, quantity: int) -> None:
        usage = Usage(
            self.next_id(),
            uuid.uuid4(),
            t,
            uuid.uuid4(),
            "gpu:a",
            quantity,
            self.clock,
            self.clock + dt.timedelta(seconds=seconds),
            seconds * 1000,
        )
        rating_view = copy.deepcopy(self.tenant(t))
        rated = rate_usage(usage, rating_view, self.prices)
        assert rated is not None
        _, transfers = rated
        before = {a.id: a.balance for a in [rating_view.wallet, *rating_view.grants]}
        self.post(transfers)
        # the in-memory split rating keeps during a batch agrees with what was posted
        for account_id, balance in before.items():
            assert self.accounts[account_id].balance == balance

    def top_up(self, t: uuid.UUID, amount: int) -> None:
        self.simple(
            TransferKind.TOP_UP,
            platform_account_id(AccountKind.CLEARING, CUR),
            wallet_id(t, CUR),
            amount,
            t,
        )

    def grant(self, t: uuid.UUID, amount: int, priority: int, lifetime_s: int) -> None:
        gid = self.next_id()
        self.accounts[gid] = Account(
            gid, AccountKind.PROMO, CUR, t, priority, self.clock + dt.timedelta(seconds=lifetime_s)
        )
        self.simple(
            TransferKind.GRANT, platform_account_id(AccountKind.PROMO_FUNDING, CUR), gid, amount, t
        )

    def expire(self) -> None:
        for a in list(self.accounts.values()):
            if a.kind == AccountKind.PROMO and not a.usable_at(self.clock) and a.balance > 0:
                self.simple(
                    TransferKind.EXPIRY,
                    a.id,
                    platform_account_id(AccountKind.PROMO_FUNDING, CUR),
                    a.balance,
                    a.tenant_id,
                )

    def reverse(self, index: int) -> None:
        if not self.transfers:
            return
        original = self.transfers[index % len(self.transfers)]
        legs = [t for t in self.transfers if t.transaction_id == original.transaction_id]
        tx = self.next_id()
        try:
            self.post([reversing(leg, tx, self.clock) for leg in legs])
        except LedgerError:
            pass  # already reversed, or it would overdraw a promotional account: refused whole


operation = st.one_of(
    st.tuples(st.just("usage"), st.sampled_from(TENANTS), st.integers(0, 7200), st.integers(1, 8)),
    st.tuples(st.just("top_up"), st.sampled_from(TENANTS), st.integers(1, 50_000_000)),
    st.tuples(
        st.just("grant"),
        st.sampled_from(TENANTS),
        st.integers(1, 20_000_000),
        st.integers(0, 3),
        st.integers(1, 20_000),
    ),
    st.tuples(st.just("tick"), st.integers(1, 10_000)),
    st.tuples(st.just("expire")),
    st.tuples(st.just("reverse"), st.integers(0, 1000)),
)


class TestLedgerInvariants:
    @settings(max_examples=150, deadline=None)
    @given(st.lists(operation, max_size=60))
    def test_any_sequence_keeps_the_ledger_balanced_and_the_cache_true(self, ops):
        model = Model.new()
        for op in ops:
            name, *args = op
            if name == "tick":
                model.clock += dt.timedelta(seconds=args[0])
            else:
                getattr(model, name)(*args)

        # A transfer is one amount moving from its debit to its credit account, so a
        # transaction balances by construction: what can go wrong is a bad amount, a
        # currency mix, or the cached balances drifting from the transfers (below). The same
        # books through the production SQL: tests/integration/test_ledger_posting_properties.py
        for t in model.transfers:
            assert t.amount_micros > 0
            assert model.accounts[t.debit_account_id].currency == t.currency
            assert model.accounts[t.credit_account_id].currency == t.currency
        derived_d, derived_c = defaultdict(int), defaultdict(int)
        for t in model.transfers:
            derived_d[t.debit_account_id] += t.amount_micros
            derived_c[t.credit_account_id] += t.amount_micros
        for account in model.accounts.values():
            assert account.debits_posted == derived_d[account.id]
            assert account.credits_posted == derived_c[account.id]
            if account.kind == AccountKind.PROMO:
                assert account.balance >= 0
        assert sum(a.balance for a in model.accounts.values()) == 0


class TestSplitCharge:
    def test_grants_by_priority_then_soonest_expiry_then_wallet_even_below_zero(self):
        t = TENANTS[0]
        wallet = Account(wallet_id(t, CUR), AccountKind.WALLET, CUR, t, credits_posted=5)
        late = Account(uuid.uuid4(), AccountKind.PROMO, CUR, t, 1, T0 + dt.timedelta(days=9), 0, 10)
        soon = Account(uuid.uuid4(), AccountKind.PROMO, CUR, t, 1, T0 + dt.timedelta(days=1), 0, 10)
        high = Account(uuid.uuid4(), AccountKind.PROMO, CUR, t, 5, T0 + dt.timedelta(days=9), 0, 3)
        gone = Account(uuid.uuid4(), AccountKind.PROMO, CUR, t, 9, T0, 0, 100)
        parts = split_charge(40, wallet, [late, soon, high, gone], T0 + dt.timedelta(hours=1))
        assert [(a.id, n) for a, n in parts] == [
            (high.id, 3),
            (soon.id, 10),
            (late.id, 10),
            (wallet.id, 17),
        ]

    def test_reversing_twice_is_refused(self):
        model = Model.new()
        model.top_up(TENANTS[0], 100)
        original = model.transfers[0]
        model.post([reversing(original, uuid.uuid4(), T0)])
        with pytest.raises(LedgerError):
            model.post([reversing(original, uuid.uuid4(), T0)])
