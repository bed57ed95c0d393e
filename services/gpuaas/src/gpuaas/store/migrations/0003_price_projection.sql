-- Projection of billing.price.v1: the price versions the runway gate rates allocations at.
-- One row per (key, scope, currency, effective_from); a newer `version` replaces an older one
-- for the same effective instant, an older or repeated one changes nothing. `scope` is the
-- tenant for an override and the nil UUID for the public list price (a key column cannot be
-- null).
CREATE TABLE price_versions (
    price_key       text        NOT NULL,
    scope           uuid        NOT NULL,
    currency        text        NOT NULL,
    effective_from  timestamptz NOT NULL,
    price_id        uuid        NOT NULL,
    micros_per_hour bigint      NOT NULL CHECK (micros_per_hour >= 0),
    min_increment_s integer     NOT NULL CHECK (min_increment_s >= 1),
    version         bigint      NOT NULL,
    PRIMARY KEY (price_key, scope, currency, effective_from)
);

