-- The catalog's records are append-only for the runtime role (the login registry serves
-- with): it may add artifacts, bundles, versions, statements and promotions, never change
-- or remove one. 0001's triggers refuse UPDATE, DELETE and TRUNCATE for everyone; this
-- takes the privileges away besides, and only the owner (which runs migrations, never the
-- service) could ALTER these tables or drop their triggers. Trusted keys (rotation,
-- revocation) and promotion policies are updated in place and keep their DML.
SELECT for_runtime_role(
    'REVOKE UPDATE, DELETE, TRUNCATE ON artifacts, bundles, bundle_blobs, versions, statements,'
    ' promotions FROM %I'
);
