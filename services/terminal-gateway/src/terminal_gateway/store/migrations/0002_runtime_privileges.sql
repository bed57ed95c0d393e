-- What the runtime role (the login terminal-gateway serves with) may not do, beyond the
-- kit's grants (platformkit 0002): recordings are evidence, appended chunk by chunk and never
-- rewritten or removed (the session's digest covers them); sessions and keys are never
-- deleted (a session ends in a final state; a key is retired, not dropped). Only the owner,
-- which runs migrations and never serves, could; a retention job would run as the owner.
SELECT for_runtime_role('REVOKE UPDATE, DELETE, TRUNCATE ON recording_chunks FROM %I');
SELECT for_runtime_role('REVOKE DELETE, TRUNCATE ON sessions, signing_keys FROM %I');
