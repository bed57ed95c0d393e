-- Reconciliation: each run, and every disagreement between the provider's settlement report
-- and the ledger's payment entries. Recorded, exposed, never corrected automatically.
CREATE TABLE reconciliation_runs (
    id          uuid PRIMARY KEY,
    provider    text        NOT NULL,
    since       timestamptz NOT NULL,
    until       timestamptz NOT NULL,
    checked     int         NOT NULL,
    mismatches  int         NOT NULL,
    ran_at      timestamptz NOT NULL DEFAULT now()
);

-- Each disagreement found, recorded once per (kind, payment) and never corrected silently.
CREATE TABLE reconciliation_mismatches (
    id                     uuid PRIMARY KEY,
    run_id                 uuid        NOT NULL REFERENCES reconciliation_runs (id),
    kind                   text        NOT NULL
                           CHECK (kind IN ('missing_in_ledger', 'missing_at_provider',
                                           'amount_mismatch')),
    payment_id             uuid        NOT NULL,
    provider               text        NOT NULL,
    provider_ref           text,
    provider_amount_micros bigint,
    ledger_amount_micros   bigint,
    detected_at            timestamptz NOT NULL DEFAULT now(),
    -- a mismatch is recorded once, however many runs see it again
    UNIQUE (kind, payment_id)
);

-- The ledger entry that credited a settled payment (its id is UUIDv5(payment id, 'settlement')).
ALTER TABLE payments ADD COLUMN settlement_transfer_id uuid;
