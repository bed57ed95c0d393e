-- The runtime role: the login a service serves with. Migrations run as the owner role (it
-- owns the schema objects, so only it can ALTER, DROP, TRUNCATE or disable a trigger); the
-- runtime role gets only the DML it needs, granted here and narrowed by each service's own
-- migrations. platformkit.migrate hands its name over as `gpucloud.runtime_role` (empty when
-- one login migrates and serves: nothing to grant).

-- Runs `statement` with %I replaced by the runtime role; nothing without one. Migrations use
-- it for every GRANT and REVOKE to the runtime role.
CREATE FUNCTION for_runtime_role(statement text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    runtime text := nullif(current_setting('gpucloud.runtime_role', true), '');
BEGIN
    IF runtime IS NOT NULL THEN
        EXECUTE format(statement, runtime);
    END IF;
END $$;
REVOKE ALL ON FUNCTION for_runtime_role(text) FROM PUBLIC;

-- Read and write rows of every table, use every sequence (identity columns, bigserial):
-- the tables that exist now and, through default privileges, every table a later migration
-- of the owner creates. No TRUNCATE, REFERENCES or TRIGGER; no CREATE in the schema.
SELECT for_runtime_role('GRANT USAGE ON SCHEMA public TO %I');
SELECT for_runtime_role('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %I');
SELECT for_runtime_role('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO %I');
SELECT for_runtime_role(
    'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I'
);
SELECT for_runtime_role(
    'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO %I'
);
-- Nobody but the owner creates objects here (the default since PostgreSQL 15; a warning
-- where an older server's public schema belongs to someone else).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
-- The migration ledger is the owner's: the runtime may read which migrations ran.
SELECT for_runtime_role('REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM %I');
