-- The ledger and the price book are append-only for the runtime role: it may insert
-- transfers and price versions, never change or remove one. The append-only triggers
-- (0001) refuse UPDATE, DELETE and TRUNCATE for everyone; this takes the privileges away
-- besides, and only the owner (which runs migrations, never the service) could ALTER these
-- tables or disable their triggers. A correction stays a reversing transfer or a new version.
SELECT for_runtime_role('REVOKE UPDATE, DELETE, TRUNCATE ON transfers, prices FROM %I');
