-- registry's catalog of record: apps, artifacts (blobs by digest), bundles, versions, signed
-- statements, trusted keys, promotion policies and the append-only promotion log.
-- The platform-public namespace is tenant_id = project_id = 00000000-0000-0000-0000-000000000000.

-- Refuses any change: versions, bundles, statements and promotions are immutable records.
CREATE FUNCTION registry_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is immutable: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

-- Apps of a tenant project, or of the platform-public namespace (nil tenant and project ids).
CREATE TABLE apps (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    project_id uuid NOT NULL,
    name text NOT NULL CHECK (name ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(name) <= 63),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);
CREATE INDEX apps_project ON apps (tenant_id, project_id, name);

-- A blob whose bytes registry hashed while they streamed into the app's OCI repository.
CREATE TABLE artifacts (
    app_id uuid NOT NULL REFERENCES apps (id),
    digest text NOT NULL CHECK (digest ~ '^sha256:[0-9a-f]{64}$'),
    size bigint NOT NULL CHECK (size >= 0),
    uploaded_by text NOT NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, digest)
);

-- A runtime bundle: the exact manifest bytes (their sha256 is the bundle digest) and the
-- blobs it names, in manifest order (position 0 is the config).
CREATE TABLE bundles (
    app_id uuid NOT NULL REFERENCES apps (id),
    manifest_digest text NOT NULL CHECK (manifest_digest ~ '^sha256:[0-9a-f]{64}$'),
    manifest bytea NOT NULL,
    media_type text NOT NULL,
    artifact_type text,
    total_size bigint NOT NULL CHECK (total_size >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, manifest_digest),
    CHECK (manifest_digest = 'sha256:' || encode(sha256(manifest), 'hex'))
);
-- The blobs a bundle's manifest names, in manifest order (position 0 is the config).
CREATE TABLE bundle_blobs (
    app_id uuid NOT NULL,
    manifest_digest text NOT NULL,
    position int NOT NULL CHECK (position >= 0),
    role text NOT NULL CHECK (role IN ('config', 'layer')),
    digest text NOT NULL,
    size bigint NOT NULL CHECK (size >= 0),
    media_type text NOT NULL,
    PRIMARY KEY (app_id, manifest_digest, position),
    FOREIGN KEY (app_id, manifest_digest) REFERENCES bundles (app_id, manifest_digest),
    FOREIGN KEY (app_id, digest) REFERENCES artifacts (app_id, digest)
);

-- Immutable SemVer versions of an app, each naming one bundle (unique precedence per app).
CREATE TABLE versions (
    id uuid PRIMARY KEY,
    app_id uuid NOT NULL REFERENCES apps (id),
    version text NOT NULL CHECK (length(version) BETWEEN 5 AND 128),
    -- the precedence key (SemVer 2.0 without build metadata): unique per app
    precedence text NOT NULL,
    manifest_digest text NOT NULL,
    published_by text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (app_id, version),
    UNIQUE (app_id, precedence),
    FOREIGN KEY (app_id, manifest_digest) REFERENCES bundles (app_id, manifest_digest)
);

-- An in-toto statement in its DSSE envelope, as the publisher attached it.
CREATE TABLE statements (
    id uuid PRIMARY KEY,
    version_id uuid NOT NULL REFERENCES versions (id),
    kind text NOT NULL CHECK (kind IN ('release', 'provenance', 'evidence', 'other')),
    predicate_type text NOT NULL,
    evidence_kind text,
    envelope bytea NOT NULL,
    envelope_digest text NOT NULL,
    signer_key_ids text[] NOT NULL,
    attached_by text NOT NULL,
    attached_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (version_id, envelope_digest)
);

-- Publishers' trusted Ed25519 public keys per tenant: active -> rotated -> revoked, with trust expiry.
CREATE TABLE trusted_keys (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    key_id text NOT NULL CHECK (key_id ~ '^sha256:[0-9a-f]{64}$'),
    public_key bytea NOT NULL CHECK (length(public_key) = 32),
    algorithm text NOT NULL DEFAULT 'ed25519' CHECK (algorithm = 'ed25519'),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status text NOT NULL CHECK (status IN ('active', 'rotated', 'revoked')),
    successor_id uuid REFERENCES trusted_keys (id),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    rotated_at timestamptz,
    revoked_at timestamptz,
    revocation_reason text CHECK (length(revocation_reason) <= 1000),
    UNIQUE (tenant_id, key_id),
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL)),
    CHECK (status <> 'rotated' OR successor_id IS NOT NULL)
);

-- A tenant's promotion policy per channel (signature threshold, required predicates, previous channel).
CREATE TABLE promotion_policies (
    tenant_id uuid NOT NULL,
    channel text NOT NULL CHECK (channel IN ('dev', 'staging', 'stable')),
    threshold int NOT NULL CHECK (threshold BETWEEN 1 AND 16),
    required_key_ids text[] NOT NULL DEFAULT '{}',
    required_evidence text[] NOT NULL DEFAULT '{}',
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel)
);

-- The append-only promotion log: every promotion (channel, the policy result that allowed
-- it) and every yank of a version, who and when. The version's channels and yanked state
-- are derived from it.
CREATE TABLE promotions (
    id uuid PRIMARY KEY,
    version_id uuid NOT NULL REFERENCES versions (id),
    action text NOT NULL CHECK (action IN ('promote', 'yank')),
    channel text CHECK (channel IN ('dev', 'staging', 'stable')),
    actor text NOT NULL,
    actor_kind text NOT NULL,
    reason text CHECK (length(reason) <= 1000),
    policy jsonb,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((action = 'promote') = (channel IS NOT NULL AND policy IS NOT NULL))
);
CREATE UNIQUE INDEX promotions_once ON promotions (version_id, coalesce(channel, 'yank'));

CREATE TRIGGER versions_immutable BEFORE UPDATE OR DELETE ON versions
    FOR EACH ROW EXECUTE FUNCTION registry_refuse_change();
CREATE TRIGGER versions_no_truncate BEFORE TRUNCATE ON versions
    FOR EACH STATEMENT EXECUTE FUNCTION registry_refuse_change();
CREATE TRIGGER bundles_immutable BEFORE UPDATE OR DELETE ON bundles
    FOR EACH ROW EXECUTE FUNCTION registry_refuse_change();
CREATE TRIGGER bundles_no_truncate BEFORE TRUNCATE ON bundles
    FOR EACH STATEMENT EXECUTE FUNCTION registry_refuse_change();
CREATE TRIGGER bundle_blobs_immutable BEFORE UPDATE OR DELETE ON bundle_blobs
    FOR EACH ROW EXECUTE FUNCTION registry_refuse_change();
CREATE TRIGGER bundle_blobs_no_truncate BEFORE TRUNCATE ON bundle_blobs
    FOR EACH STATEMENT EXECUTE FUNCTION registry_refuse_change();
CREATE TRIGGER statements_immutable BEFORE UPDATE OR DELETE ON statements
    FOR EACH ROW EXECUTE FUNCTION registry_refuse_change();
CREATE TRIGGER statements_no_truncate BEFORE TRUNCATE ON statements
    FOR EACH STATEMENT EXECUTE FUNCTION registry_refuse_change();
CREATE TRIGGER promotions_immutable BEFORE UPDATE OR DELETE ON promotions
    FOR EACH ROW EXECUTE FUNCTION registry_refuse_change();
CREATE TRIGGER promotions_no_truncate BEFORE TRUNCATE ON promotions
    FOR EACH STATEMENT EXECUTE FUNCTION registry_refuse_change();
