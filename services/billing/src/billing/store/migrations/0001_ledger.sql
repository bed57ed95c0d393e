-- billing's ledger: TigerBeetle-style transfers (one row = debit account, credit account,
-- amount), accounts with cached balances, the price book and the tenant projection.

-- Tenants, projected from iam.tenant.v1 (or opened lazily by the first usage interval, since
-- the two topics are not ordered with each other). `standing` and `ledger_sequence` are
-- billing's own: the last standing announced on billing.balance.v1 and its sequence.
CREATE TABLE tenants (
    id                     uuid PRIMARY KEY,
    name                   text,
    slug                   text,
    status                 text        NOT NULL DEFAULT 'active',
    currency               char(3)     NOT NULL,
    low_threshold_micros   bigint      NOT NULL CHECK (low_threshold_micros >= 0),
    standing               text        NOT NULL DEFAULT 'exhausted'
                                       CHECK (standing IN ('ok', 'low', 'exhausted')),
    ledger_sequence        bigint      NOT NULL DEFAULT 0,
    -- when the standing was last announced; accounts.updated_at later than this means the
    -- balance moved since (the periodic announcer's work list)
    announced_at           timestamptz NOT NULL DEFAULT '-infinity',
    created_at             timestamptz NOT NULL DEFAULT now()
);

-- Accounts. Tenant accounts: `wallet` (prepaid credit, one per tenant and currency) and
-- `promo` (one per promotional grant, with expiry and priority). Platform accounts
-- (tenant_id NULL): `revenue`, `clearing` (payments in flight from the provider) and
-- `promo_funding` (where promotional credit comes from and where expired credit returns).
-- Balances are cached here, TigerBeetle-style: debits_posted and credits_posted, updated
-- once per account per batch in the transaction that inserts the transfers.
CREATE TABLE accounts (
    id             uuid PRIMARY KEY,
    tenant_id      uuid REFERENCES tenants (id),
    kind           text        NOT NULL
                   CHECK (kind IN ('wallet', 'promo', 'revenue', 'clearing', 'promo_funding')),
    currency       char(3)     NOT NULL,
    priority       int         NOT NULL DEFAULT 0,
    expires_at     timestamptz,
    debits_posted  bigint      NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted bigint      NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    -- clock_timestamp() of the last balance movement (compared with tenants.announced_at)
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((tenant_id IS NULL) = (kind IN ('revenue', 'clearing', 'promo_funding'))),
    -- a promotional account can never give more than it was granted
    CHECK (kind <> 'promo' OR debits_posted <= credits_posted)
);
CREATE INDEX accounts_tenant ON accounts (tenant_id, kind) WHERE tenant_id IS NOT NULL;

-- Transfers: the ledger. Balanced by construction (one amount moves from the debit account
-- to the credit account); a charge spanning several accounts is several transfers sharing a
-- transaction_id. A usage transfer's id is the interval id (leg 0) or UUIDv5 of it (legs
-- 1..n): the ledger row itself is the deduplication record.
CREATE TABLE transfers (
    seq               bigint GENERATED ALWAYS AS IDENTITY (CACHE 1000),
    id                uuid        PRIMARY KEY,
    transaction_id    uuid        NOT NULL,
    debit_account_id  uuid        NOT NULL,
    credit_account_id uuid        NOT NULL,
    amount_micros     bigint      NOT NULL CHECK (amount_micros > 0),
    currency          char(3)     NOT NULL,
    kind              text        NOT NULL
                      CHECK (kind IN ('usage', 'top_up', 'grant', 'expiry', 'reversal')),
    tenant_id         uuid        NOT NULL,
    leg               smallint    NOT NULL DEFAULT 0,
    project_id        uuid,
    allocation_id     uuid,
    price_key         text,
    quantity          int,
    billable_seconds  bigint,
    reverses          uuid,
    occurred_at       timestamptz NOT NULL,
    posted_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (debit_account_id <> credit_account_id)
);
CREATE INDEX transfers_tenant_seq ON transfers (tenant_id, seq);

-- Immutability, enforced by the database: a correction is a reversing transfer, never an edit.
CREATE FUNCTION ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER transfers_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_is_append_only();

-- Both accounts of every transfer exist and carry the transfer's currency. Checked once per
-- INSERT statement over its transition table (one set-based join per batch) instead of two
-- foreign-key lookups per row: same guarantee, a fraction of the cost at rating rates.
CREATE FUNCTION transfers_check_accounts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.id, n.currency INTO bad
      FROM new_transfers n
      LEFT JOIN accounts d ON d.id = n.debit_account_id
      LEFT JOIN accounts c ON c.id = n.credit_account_id
     WHERE d.id IS NULL OR c.id IS NULL OR d.currency <> n.currency OR c.currency <> n.currency
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'transfer % refers to a missing account or mixes currencies', bad.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER transfers_accounts_exist AFTER INSERT ON transfers
    REFERENCING NEW TABLE AS new_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION transfers_check_accounts();

-- The price book: price per GPU-hour (per whole GPU or MIG slice) of a price key, versioned
-- by effective time; a row with tenant_id is that tenant's override. Versions are never
-- edited: a new price is a new row with a later effective_from.
CREATE TABLE prices (
    id                  uuid PRIMARY KEY,
    price_key           text        NOT NULL,
    currency            char(3)     NOT NULL,
    tenant_id           uuid,
    micros_per_gpu_hour bigint      NOT NULL CHECK (micros_per_gpu_hour >= 0),
    min_increment_s     int         NOT NULL DEFAULT 1 CHECK (min_increment_s >= 1),
    effective_from      timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX prices_version
    ON prices (price_key, currency, COALESCE(tenant_id, '00000000-0000-0000-0000-000000000000'),
               effective_from);
CREATE TRIGGER prices_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON prices
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_is_append_only();

-- Usage intervals that could not be priced (no price in effect for their key): kept, never
-- dropped, so they can be rated once a price exists.
CREATE TABLE unrated_usage (
    interval_id uuid PRIMARY KEY,
    tenant_id   uuid        NOT NULL,
    price_key   text        NOT NULL,
    payload     bytea       NOT NULL,
    reason      text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
