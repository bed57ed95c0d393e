-- Re-rating of parked usage: an interval that arrived with no price in effect waits in
-- unrated_usage until a price covering its start exists, then is rated at the version in
-- effect at its start (app/rerating.py). The row is kept as the record that it waited;
-- `rated_at` says when it left the queue (its transfer, id = interval id, is in the ledger).
ALTER TABLE unrated_usage ADD COLUMN started_at timestamptz;
ALTER TABLE unrated_usage ADD COLUMN rated_at timestamptz;
UPDATE unrated_usage
   SET started_at = (convert_from(payload, 'UTF8')::jsonb ->> 'started_at')::timestamptz;
ALTER TABLE unrated_usage ALTER COLUMN started_at SET NOT NULL;
CREATE INDEX unrated_usage_waiting ON unrated_usage (price_key, started_at)
    WHERE rated_at IS NULL;
