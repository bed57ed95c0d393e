-- The audit log is append-only for the runtime role: it may add records, never change or
-- remove one (the trigger of 0001 refuses it too; only the owner, which runs migrations,
-- could drop that trigger or truncate the table).
SELECT for_runtime_role('REVOKE UPDATE, DELETE, TRUNCATE ON audit_records FROM %I');
