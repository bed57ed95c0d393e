-- The app manifest a bundle carries (its config blob, application/vnd.gpucloud.bundle.config.v1+json,
-- parsed as a JSON object at publish when at most 64 KiB): every registry.release.v1 event
-- carries it as bundle.app_manifest, so appplatform builds its catalog without calling
-- registry (docs/registry.md "App manifest"). NULL for other configs and older bundles.
ALTER TABLE bundles ADD COLUMN app_manifest jsonb
    CHECK (app_manifest IS NULL OR jsonb_typeof(app_manifest) = 'object');
