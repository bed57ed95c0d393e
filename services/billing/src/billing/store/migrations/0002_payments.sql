-- Top-up payments and the provider's webhook deliveries (deduplicated by provider event id).
CREATE TABLE payments (
    id             uuid PRIMARY KEY,
    tenant_id      uuid        NOT NULL REFERENCES tenants (id),
    amount_micros  bigint      NOT NULL CHECK (amount_micros > 0),
    currency       char(3)     NOT NULL,
    provider       text        NOT NULL,
    provider_ref   text,
    status         text        NOT NULL
                   CHECK (status IN ('initiated', 'pending', 'settled', 'failed', 'refunded')),
    failure_reason text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, provider_ref)
);
CREATE INDEX payments_tenant ON payments (tenant_id, created_at);

-- Webhook deliveries seen, one row per (provider, provider event id): a repeated delivery
-- finds its row and changes nothing.
CREATE TABLE provider_events (
    provider    text        NOT NULL,
    event_id    text        NOT NULL,
    payment_id  uuid,
    type        text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);
