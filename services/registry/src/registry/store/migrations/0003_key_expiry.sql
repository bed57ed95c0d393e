-- Trust expiry of a publisher key: from expires_at on (NULL: never) its signatures count for
-- nothing, for promotions and launches alike, until the tenant renews it (a new expires_at).
ALTER TABLE trusted_keys ADD COLUMN expires_at timestamptz;
