-- Refunds of settled top-ups. A refund is its own row (a payment can be refunded in several
-- parts); the payment moves settled -> partially_refunded -> refunded as refunds succeed.
-- The wallet is debited (wallet -> clearing, kind `refund`) when the refund is requested, so
-- the refunded credit cannot be spent meanwhile; a refund the provider refuses is corrected
-- by a reversal of that transfer, never by an edit.
ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check
    CHECK (status IN ('initiated', 'pending', 'settled', 'failed', 'partially_refunded',
                      'refunded'));
-- Refunded so far (succeeded refunds) and reserved (requested, not yet known): together
-- never more than the payment.
ALTER TABLE payments ADD COLUMN refunded_micros bigint NOT NULL DEFAULT 0;
ALTER TABLE payments ADD COLUMN refund_reserved_micros bigint NOT NULL DEFAULT 0;
ALTER TABLE payments ADD CONSTRAINT payments_refunds_bounded
    CHECK (refunded_micros >= 0 AND refund_reserved_micros >= 0
           AND refunded_micros + refund_reserved_micros <= amount_micros);

ALTER TABLE transfers DROP CONSTRAINT transfers_kind_check;
ALTER TABLE transfers ADD CONSTRAINT transfers_kind_check
    CHECK (kind IN ('usage', 'top_up', 'grant', 'expiry', 'reversal', 'refund'));

-- Refunds of settled top-ups (requested -> pending | succeeded | failed), written by the
-- refund use case and the provider's outcome.
CREATE TABLE refunds (
    id                uuid PRIMARY KEY,
    payment_id        uuid        NOT NULL REFERENCES payments (id),
    tenant_id         uuid        NOT NULL,
    amount_micros     bigint      NOT NULL CHECK (amount_micros > 0),
    currency          char(3)     NOT NULL,
    status            text        NOT NULL
                      CHECK (status IN ('requested', 'pending', 'succeeded', 'failed')),
    provider_ref      text,
    failure_reason    text,
    -- the wallet debit (UUIDv5(refund id, 'refund')) and, for a failed refund, its reversal
    debit_transfer_id uuid        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_payment ON refunds (payment_id, created_at);
