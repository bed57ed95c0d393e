"""All of billing's ledger queries: tenants, accounts, transfers, prices.

The hot path (rating) is set-based: every statement takes arrays and touches a whole batch,
so one batch of thousands of intervals costs a handful of round trips. Transfers are
inserted with ON CONFLICT DO NOTHING (the derived id is the deduplication record) and the
cached balances of the accounts they touch are updated in the same statement, once per
account.
"""

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from billing.domain.balance import Standing
from billing.domain.ledger import (
    Account,
    AccountKind,
    Transfer,
    TransferKind,
    platform_account_id,
    wallet_id,
)
from billing.domain.pricing import PriceVersion
from billing.domain.rating import StandingChange, TenantLedger, UsageCharge
from billing.store.arrays import with_array_literals
from platformkit.db import UnitOfWork

_LOCK_TENANTS = text(
    "SELECT id, currency, low_threshold_micros, standing, ledger_sequence FROM tenants"
    " WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR UPDATE"
)
_OPEN_TENANTS = text(
    "INSERT INTO tenants (id, currency, low_threshold_micros)"
    " SELECT unnest(CAST(:ids AS uuid[])), :currency, :threshold"
    " ON CONFLICT (id) DO NOTHING RETURNING id"
)
_OPEN_ACCOUNTS = text(
    "INSERT INTO accounts (id, tenant_id, kind, currency)"
    " SELECT unnest(CAST(:ids AS uuid[])), unnest(CAST(:tenants AS uuid[])),"
    " unnest(CAST(:kinds AS text[])), :currency"
    " ON CONFLICT (id) DO NOTHING"
)
_TENANT_ACCOUNTS = text(
    "SELECT id, tenant_id, kind, currency, priority, expires_at, debits_posted, credits_posted"
    " FROM accounts WHERE tenant_id = ANY(CAST(:ids AS uuid[]))"
    " AND (kind = 'wallet' OR credits_posted > debits_posted)"
)
_PRICES = text(
    "SELECT price_key, currency, tenant_id, micros_per_gpu_hour, min_increment_s,"
    " effective_from FROM prices WHERE price_key = ANY(CAST(:keys AS text[]))"
    " AND (tenant_id IS NULL OR tenant_id = ANY(CAST(:tenants AS uuid[])))"
)
_EXISTING = text("SELECT id FROM transfers WHERE id = ANY(CAST(:ids AS uuid[]))")
_COLUMNS = (
    ("id", "uuid"),
    ("transaction_id", "uuid"),
    ("debit_account_id", "uuid"),
    ("credit_account_id", "uuid"),
    ("amount_micros", "bigint"),
    ("currency", "text"),
    ("kind", "text"),
    ("tenant_id", "uuid"),
    ("leg", "smallint"),
    ("project_id", "uuid"),
    ("allocation_id", "uuid"),
    ("price_key", "text"),
    ("quantity", "int"),
    ("billable_seconds", "bigint"),
    ("reverses", "uuid"),
    ("occurred_at", "timestamptz"),
)
# Built from the constant column list above: no input reaches the text. Each tenant's
# transfers take the next positions of tenants.last_transfer_seq in input order; the UPDATE
# holds the tenant's row lock until commit, so positions become visible in order (0008).
_POST = text(
    "WITH input AS (SELECT * FROM unnest("  # noqa: S608
    + ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _COLUMNS)
    + ") WITH ORDINALITY AS i("
    + ", ".join(name for name, _ in _COLUMNS)
    + ", ord)),"
    " counts AS (SELECT tenant_id, count(*) AS n FROM input GROUP BY tenant_id),"
    " bumped AS (UPDATE tenants t SET last_transfer_seq = t.last_transfer_seq + c.n"
    " FROM counts c WHERE t.id = c.tenant_id"
    " RETURNING t.id, t.last_transfer_seq - c.n AS base),"
    " ins AS (INSERT INTO transfers ("
    + ", ".join(name for name, _ in _COLUMNS)
    + ", tenant_seq) SELECT "
    + ", ".join(f"i.{name}" for name, _ in _COLUMNS)
    + ", b.base + row_number() OVER (PARTITION BY i.tenant_id ORDER BY i.ord)"
    " FROM input i JOIN bumped b ON b.id = i.tenant_id ON CONFLICT (id) DO NOTHING"
    " RETURNING debit_account_id, credit_account_id, amount_micros),"
    " moves AS (SELECT debit_account_id AS account, amount_micros AS debit, 0::bigint AS credit"
    " FROM ins UNION ALL SELECT credit_account_id, 0::bigint, amount_micros FROM ins),"
    " totals AS (SELECT account, sum(debit)::bigint AS d, sum(credit)::bigint AS c"
    " FROM moves GROUP BY account),"
    " upd AS (UPDATE accounts a SET debits_posted = a.debits_posted + t.d,"
    " credits_posted = a.credits_posted + t.c, updated_at = clock_timestamp()"
    " FROM totals t WHERE a.id = t.account"
    " RETURNING a.id)"
    " SELECT (SELECT count(*) FROM ins) AS inserted, (SELECT count(*) FROM upd) AS accounts,"
    " (SELECT count(*) FROM bumped) AS tenants"
)
_SAVE_STANDINGS = text(
    "UPDATE tenants t SET standing = s.standing, ledger_sequence = s.seq,"
    " announced_at = clock_timestamp()"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:standings AS text[]), CAST(:seqs AS bigint[]))"
    " AS s(id, standing, seq) WHERE t.id = s.id"
)


class DuplicateTransfer(Exception):
    """A transfer id the caller believed new was already in the ledger (a concurrent
    writer won): the transaction must be retried from the start."""


class UnknownTenant(Exception):
    """A transfer's tenant has no row in tenants (every movement opens its tenant first)."""


class Overdrawn(Exception):
    """The transfers would take more from an account than its constraints allow (a
    promotional grant holds less than a reversal takes back)."""


class PriceExists(Exception):
    """A version of this price already takes effect at that instant."""


_CLAIM_PRICES = text(
    "WITH claimed AS ("
    " INSERT INTO price_announcements (price_id)"
    " SELECT id FROM prices p WHERE NOT EXISTS"
    " (SELECT 1 FROM price_announcements a WHERE a.price_id = p.id)"
    " ORDER BY version ON CONFLICT (price_id) DO NOTHING RETURNING price_id)"
    " SELECT p.id, p.price_key, p.tenant_id, p.currency, p.micros_per_gpu_hour,"
    " p.min_increment_s, p.effective_from, p.version"
    " FROM prices p JOIN claimed c ON c.price_id = p.id ORDER BY p.version"
)
# Parked intervals that a price now covers, oldest first.
_COVERED = text(
    "SELECT u.interval_id, u.payload FROM unrated_usage u JOIN tenants t ON t.id = u.tenant_id"
    " WHERE u.rated_at IS NULL AND EXISTS (SELECT 1 FROM prices p"
    " WHERE p.price_key = u.price_key AND p.currency = t.currency"
    " AND p.effective_from <= u.started_at"
    " AND (p.tenant_id IS NULL OR p.tenant_id = u.tenant_id))"
    " ORDER BY u.received_at LIMIT :limit"
)


class LedgerRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.session = uow.session

    async def _run(self, statement: Any, params: dict[str, Any]) -> Any:
        return await self.session.execute(statement, with_array_literals(params))

    async def _all(self, statement: Any, params: dict[str, Any]) -> list[Any]:
        return list((await self._run(statement, params)).mappings().all())

    async def open_tenants(
        self, tenant_ids: Sequence[uuid.UUID], currency: str, low_threshold_micros: int
    ) -> list[uuid.UUID]:
        """Open tenants and their wallets if new (idempotent); returns the ones opened."""
        opened = [
            r["id"]
            for r in await self._all(
                _OPEN_TENANTS,
                {"ids": list(tenant_ids), "currency": currency, "threshold": low_threshold_micros},
            )
        ]
        if opened:
            await self.open_platform_accounts(currency)
            await self._run(
                _OPEN_ACCOUNTS,
                {
                    "ids": [wallet_id(t, currency) for t in opened],
                    "tenants": opened,
                    "kinds": [AccountKind.WALLET.value] * len(opened),
                    "currency": currency,
                },
            )
        return opened

    async def open_platform_accounts(self, currency: str) -> None:
        kinds = [AccountKind.REVENUE, AccountKind.CLEARING, AccountKind.PROMO_FUNDING]
        await self._run(
            text(
                "INSERT INTO accounts (id, kind, currency) SELECT unnest(CAST(:ids AS uuid[])),"
                " unnest(CAST(:kinds AS text[])), :currency ON CONFLICT (id) DO NOTHING"
            ),
            {
                "ids": [platform_account_id(k, currency) for k in kinds],
                "kinds": [k.value for k in kinds],
                "currency": currency,
            },
        )

    async def tenants_to_announce(self, limit: int) -> list[uuid.UUID]:
        """Tenants whose accounts moved since their standing was last announced."""
        rows = await self._all(
            text(
                "SELECT DISTINCT a.tenant_id FROM accounts a JOIN tenants t ON t.id = a.tenant_id"
                " WHERE a.updated_at > t.announced_at LIMIT :limit"
            ),
            {"limit": limit},
        )
        return [r["tenant_id"] for r in rows]

    async def lock_tenants(self, tenant_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Any]:
        """Lock the tenants' rows (in id order: no deadlock between concurrent batches).
        Every movement of a tenant's accounts holds this lock first."""
        rows = await self._all(_LOCK_TENANTS, {"ids": sorted(set(tenant_ids))})
        return {r["id"]: r for r in rows}

    async def tenant_ledgers(
        self, tenant_rows: dict[uuid.UUID, Any]
    ) -> dict[uuid.UUID, TenantLedger]:
        """The locked tenants' wallets and promotional grants that still hold credit."""
        ledgers = {
            tid: TenantLedger(
                tenant_id=tid,
                currency=row["currency"],
                low_threshold_micros=row["low_threshold_micros"],
                standing=Standing(row["standing"]),
                ledger_sequence=row["ledger_sequence"],
                wallet=Account(wallet_id(tid, row["currency"]), AccountKind.WALLET, "XXX"),
                grants=[],
            )
            for tid, row in tenant_rows.items()
        }
        for r in await self._all(_TENANT_ACCOUNTS, {"ids": list(tenant_rows)}):
            account = _account(r)
            ledger = ledgers[r["tenant_id"]]
            if account.kind == AccountKind.WALLET and account.currency == ledger.currency:
                ledger.wallet = account
            elif account.kind == AccountKind.PROMO:
                ledger.grants.append(account)
        return ledgers

    async def price_versions(
        self, price_keys: Iterable[str], tenant_ids: Iterable[uuid.UUID]
    ) -> list[PriceVersion]:
        rows = await self._all(
            _PRICES, {"keys": sorted(set(price_keys)), "tenants": list(set(tenant_ids))}
        )
        return [
            PriceVersion(
                price_key=r["price_key"],
                currency=r["currency"],
                micros_per_gpu_hour=r["micros_per_gpu_hour"],
                effective_from=r["effective_from"],
                tenant_id=r["tenant_id"],
                min_increment_s=r["min_increment_s"],
            )
            for r in rows
        ]

    async def existing_transfer_ids(self, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        return {r["id"] for r in await self._all(_EXISTING, {"ids": list(ids)})}

    async def post(self, rows: "TransferColumns") -> int:
        """Insert transfers and move the cached balances of their accounts; returns how many
        were new. Each tenant's transfers take its next ledger positions (tenant_seq).
        Raises UnknownTenant for a tenant not opened, DuplicateTransfer when fewer were new
        than the caller planned, Overdrawn when an account's constraint refuses the
        movement."""
        if not rows.id:
            return 0
        try:
            result = (await self._run(_POST, rows.params())).mappings().one()
        except IntegrityError as exc:
            raise Overdrawn(str(exc.orig)) from exc
        if result["tenants"] != len(set(rows.tenant_id)):
            raise UnknownTenant("a transfer names a tenant billing has not opened")
        if result["inserted"] != len(rows.id):
            raise DuplicateTransfer(f"{len(rows.id) - result['inserted']} transfers existed")
        return result["inserted"]

    async def save_standings(self, changes: Sequence[StandingChange]) -> None:
        if changes:
            await self._run(
                _SAVE_STANDINGS,
                {
                    "ids": [c.tenant_id for c in changes],
                    "standings": [c.standing.value for c in changes],
                    "seqs": [c.ledger_sequence for c in changes],
                },
            )

    async def add_unrated(
        self, rows: Sequence[tuple[uuid.UUID, uuid.UUID, str, dt.datetime, bytes]]
    ) -> None:
        """Park intervals with no price in effect (kept until a price covers them)."""
        if rows:
            await self.session.execute(
                text(
                    "INSERT INTO unrated_usage (interval_id, tenant_id, price_key, started_at,"
                    " payload, reason) VALUES (:interval_id, :tenant_id, :price_key, :started,"
                    " :payload, 'no price in effect') ON CONFLICT (interval_id) DO NOTHING"
                ),
                [
                    {"interval_id": i, "tenant_id": t, "price_key": k, "started": at, "payload": p}
                    for i, t, k, at, p in rows
                ],
            )

    async def describe_tenant(
        self, tenant_id: uuid.UUID, name: str, slug: str, status: str
    ) -> None:
        """The descriptive fields of iam's tenant (the projection)."""
        await self._run(
            text("UPDATE tenants SET name = :name, slug = :slug, status = :status WHERE id = :id"),
            {"id": tenant_id, "name": name, "slug": slug, "status": status},
        )

    async def suspend_tenant(self, tenant_id: uuid.UUID) -> None:
        await self._run(
            text("UPDATE tenants SET status = 'suspended' WHERE id = :id"), {"id": tenant_id}
        )

    async def account_balance(self, account_id: uuid.UUID) -> int:
        return (
            await self._run(
                text("SELECT credits_posted - debits_posted FROM accounts WHERE id = :id"),
                {"id": account_id},
            )
        ).scalar_one()

    async def open_grant(
        self,
        grant_id: uuid.UUID,
        tenant_id: uuid.UUID,
        currency: str,
        priority: int,
        expires_at: dt.datetime,
    ) -> None:
        await self._run(
            text(
                "INSERT INTO accounts (id, tenant_id, kind, currency, priority, expires_at)"
                " VALUES (:id, :tenant, 'promo', :currency, :priority, :expires_at)"
            ),
            {
                "id": grant_id,
                "tenant": tenant_id,
                "currency": currency,
                "priority": priority,
                "expires_at": expires_at,
            },
        )

    async def tenants_with_expired_grants(self, now: dt.datetime) -> list[uuid.UUID]:
        rows = await self._all(
            text(
                "SELECT DISTINCT tenant_id FROM accounts WHERE kind = 'promo'"
                " AND expires_at <= :now AND credits_posted > debits_posted"
            ),
            {"now": now},
        )
        return [r["tenant_id"] for r in rows]

    async def expired_grants(self, tenant_id: uuid.UUID, now: dt.datetime) -> list[Any]:
        """The tenant's expired grants with what they still hold (`left_micros`)."""
        return await self._all(
            text(
                "SELECT id, currency, credits_posted - debits_posted AS left_micros"
                " FROM accounts WHERE tenant_id = :t AND kind = 'promo'"
                " AND expires_at <= :now AND credits_posted > debits_posted"
            ),
            {"t": tenant_id, "now": now},
        )

    async def transaction_legs(self, transaction_id: uuid.UUID) -> list[Transfer]:
        rows = await self._all(
            text(
                "SELECT id, transaction_id, debit_account_id, credit_account_id, amount_micros,"
                " currency, kind, tenant_id, leg, occurred_at FROM transfers"
                " WHERE transaction_id = :tx ORDER BY leg"
            ),
            {"tx": transaction_id},
        )
        return [
            Transfer(
                id=r["id"],
                transaction_id=r["transaction_id"],
                debit_account_id=r["debit_account_id"],
                credit_account_id=r["credit_account_id"],
                amount_micros=r["amount_micros"],
                currency=r["currency"],
                kind=TransferKind(r["kind"]),
                tenant_id=r["tenant_id"],
                occurred_at=r["occurred_at"],
                leg=r["leg"],
            )
            for r in rows
        ]

    async def add_price(self, price_id: uuid.UUID, version: PriceVersion) -> None:
        """A new price version (append-only); PriceExists when one takes effect at the same
        instant. In a savepoint, so the caller's transaction stays usable."""
        try:
            async with self.session.begin_nested():
                await self._run(
                    text(
                        "INSERT INTO prices (id, price_key, currency, tenant_id,"
                        " micros_per_gpu_hour, min_increment_s, effective_from) VALUES (:id,"
                        " :key, :currency, :tenant, :micros, :inc, :from)"
                    ),
                    {
                        "id": price_id,
                        "key": version.price_key,
                        "currency": version.currency,
                        "tenant": version.tenant_id,
                        "micros": version.micros_per_gpu_hour,
                        "inc": version.min_increment_s,
                        "from": version.effective_from,
                    },
                )
        except IntegrityError:
            raise PriceExists(version.price_key) from None

    async def claim_unannounced_prices(self) -> list[Any]:
        """Every price version not yet announced, oldest first, claimed once (the insert
        into price_announcements returns a version only to the transaction that wins it)."""
        return await self._all(_CLAIM_PRICES, {})

    async def covered_parked(self, limit: int) -> list[Any]:
        """Parked intervals a price now covers (interval_id, payload), oldest first."""
        return await self._all(_COVERED, {"limit": limit})

    async def mark_rated(self, interval_ids: Sequence[uuid.UUID]) -> None:
        await self._run(
            text(
                "UPDATE unrated_usage SET rated_at = now()"
                " WHERE interval_id = ANY(CAST(:ids AS uuid[])) AND rated_at IS NULL"
            ),
            {"ids": list(interval_ids)},
        )

    async def parked(
        self, tenant_id: uuid.UUID | None, include_rated: bool, limit: int
    ) -> list[Any]:
        return await self._all(
            text(
                "SELECT interval_id, tenant_id, price_key, started_at, reason, received_at,"
                " rated_at FROM unrated_usage"
                " WHERE (CAST(:tenant AS uuid) IS NULL OR tenant_id = CAST(:tenant AS uuid))"
                " AND (:all OR rated_at IS NULL) ORDER BY received_at LIMIT :limit"
            ),
            {"tenant": tenant_id, "all": include_rated, "limit": limit},
        )


@dataclasses.dataclass
class TransferColumns:
    """Transfers as column arrays, the shape `unnest` inserts from (field order = _COLUMNS)."""

    id: list[uuid.UUID] = dataclasses.field(default_factory=list)
    transaction_id: list[uuid.UUID] = dataclasses.field(default_factory=list)
    debit_account_id: list[uuid.UUID] = dataclasses.field(default_factory=list)
    credit_account_id: list[uuid.UUID] = dataclasses.field(default_factory=list)
    amount_micros: list[int] = dataclasses.field(default_factory=list)
    currency: list[str] = dataclasses.field(default_factory=list)
    kind: list[str] = dataclasses.field(default_factory=list)
    tenant_id: list[uuid.UUID] = dataclasses.field(default_factory=list)
    leg: list[int] = dataclasses.field(default_factory=list)
    project_id: list[uuid.UUID | None] = dataclasses.field(default_factory=list)
    allocation_id: list[uuid.UUID | None] = dataclasses.field(default_factory=list)
    price_key: list[str | None] = dataclasses.field(default_factory=list)
    quantity: list[int | None] = dataclasses.field(default_factory=list)
    billable_seconds: list[int | None] = dataclasses.field(default_factory=list)
    reverses: list[uuid.UUID | None] = dataclasses.field(default_factory=list)
    occurred_at: list[dt.datetime] = dataclasses.field(default_factory=list)

    def add(
        self,
        transfer: Transfer,
        *,
        project_id: uuid.UUID | None = None,
        allocation_id: uuid.UUID | None = None,
        price_key: str | None = None,
        quantity: int | None = None,
        billable_seconds: int | None = None,
    ) -> None:
        self.id.append(transfer.id)
        self.transaction_id.append(transfer.transaction_id)
        self.debit_account_id.append(transfer.debit_account_id)
        self.credit_account_id.append(transfer.credit_account_id)
        self.amount_micros.append(transfer.amount_micros)
        self.currency.append(transfer.currency)
        self.kind.append(transfer.kind.value)
        self.tenant_id.append(transfer.tenant_id)
        self.leg.append(transfer.leg)
        self.project_id.append(project_id)
        self.allocation_id.append(allocation_id)
        self.price_key.append(price_key)
        self.quantity.append(quantity)
        self.billable_seconds.append(billable_seconds)
        self.reverses.append(transfer.reverses)
        self.occurred_at.append(transfer.occurred_at)

    @classmethod
    def for_charges(cls, charges: Sequence[UsageCharge]) -> "TransferColumns":
        """Every transfer of rated intervals with their usage details: one comprehension per
        column instead of sixteen appends per transfer (the rating hot path)."""
        pairs = [(c, t) for c in charges for t in c.transfers]
        transfers = [t for _, t in pairs]
        usages = [c.usage for c, _ in pairs]
        kind = [t.kind.value for t in transfers]
        return cls(
            id=[t.id for t in transfers],
            transaction_id=[t.transaction_id for t in transfers],
            debit_account_id=[t.debit_account_id for t in transfers],
            credit_account_id=[t.credit_account_id for t in transfers],
            amount_micros=[t.amount_micros for t in transfers],
            currency=[t.currency for t in transfers],
            kind=kind,
            tenant_id=[t.tenant_id for t in transfers],
            leg=[t.leg for t in transfers],
            project_id=[u.project_id for u in usages],
            allocation_id=[u.allocation_id for u in usages],
            price_key=[u.price_key for u in usages],
            quantity=[u.quantity for u in usages],
            billable_seconds=[c.billable_seconds for c, _ in pairs],
            reverses=[t.reverses for t in transfers],
            occurred_at=[t.occurred_at for t in transfers],
        )

    def params(self) -> dict[str, list[Any]]:
        return {name: getattr(self, name) for name, _ in _COLUMNS}


def _account(r: Any) -> Account:
    return Account(
        id=r["id"],
        kind=AccountKind(r["kind"]),
        currency=r["currency"],
        tenant_id=r["tenant_id"],
        priority=r["priority"],
        expires_at=r["expires_at"],
        debits_posted=r["debits_posted"],
        credits_posted=r["credits_posted"],
    )


_VERIFY_ACCOUNTS = text(
    "WITH derived AS (SELECT account, sum(d)::bigint AS d, sum(c)::bigint AS c FROM ("
    " SELECT debit_account_id AS account, amount_micros AS d, 0::bigint AS c FROM transfers"
    " UNION ALL SELECT credit_account_id, 0::bigint, amount_micros FROM transfers) m"
    " GROUP BY account)"
    " SELECT coalesce(a.id, x.account) AS account_id, a.kind, a.tenant_id,"
    " a.debits_posted, a.credits_posted, coalesce(x.d, 0) AS derived_debits,"
    " coalesce(x.c, 0) AS derived_credits"
    " FROM accounts a FULL JOIN derived x ON x.account = a.id"
    " WHERE a.id IS NULL OR a.debits_posted <> coalesce(x.d, 0)"
    " OR a.credits_posted <> coalesce(x.c, 0) ORDER BY 1"
)
_VERIFY_CURRENCIES = text(
    "SELECT currency, sum(credits_posted - debits_posted)::bigint AS net, count(*) AS accounts"
    " FROM accounts GROUP BY currency ORDER BY currency"
)


class LedgerCheck:
    """Recomputes balances from the transfers; reports, never repairs."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.session = uow.session

    async def account_differences(self) -> list[Any]:
        return list((await self.session.execute(_VERIFY_ACCOUNTS)).mappings().all())

    async def currency_totals(self) -> list[Any]:
        return list((await self.session.execute(_VERIFY_CURRENCIES)).mappings().all())

    async def transfer_count(self) -> int:
        return (await self.session.execute(text("SELECT count(*) FROM transfers"))).scalar_one()
