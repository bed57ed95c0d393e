-- The retention job (platformkit.retention) deletes inbox rows, idempotency keys and sent
-- outbox rows older than each service's declared retention, oldest first, in bounded slices:
-- these indexes find them without scanning the tables.
CREATE INDEX inbox_received_at ON inbox (received_at);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;
