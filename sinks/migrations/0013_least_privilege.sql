-- Least privilege for the API's role: what `sluice_api` may do is what the API does.
--
-- Until now 0004 gave `sluice_api` SELECT, INSERT, UPDATE and DELETE on every tenant
-- table, and as the default for every table created later: an API process could write
-- `events`, `dead_letters`' contents or `event_deletions`, which only the sink writes.
-- After this migration it holds, table by table, only what its code runs
-- (store/*.py through the API's pool; tests/integration/test_tenants.py checks the list):
--
--   SELECT                  every table it reads (all of them: queries, histories, keys,
--                           catalog, registry, receipts, jobs)
--   INSERT, UPDATE          api_keys (create; revoke, rotate), replay_jobs (start, progress)
--   UPDATE                  dead_letters (claims of a replay, status, outcome; FOR UPDATE
--                           SKIP LOCKED needs it)
--   INSERT                  deletions (a delete's receipt)
--   INSERT, UPDATE, DELETE  registry_versions (register, soft and permanent delete)
--   INSERT                  registry_schemas
--   INSERT, UPDATE          registry_config (set, as an upsert)
--
-- New tables get nothing by default: a migration that adds one grants what the API needs.
--
-- What this cannot stop: the role sets `sluice.tenant` itself (row-level security reads
-- it), so code running as the API, e.g. through an injection, could choose any tenant.
-- The wall is against a query that forgets its tenant condition, not against the API
-- process itself; docs/operations.md says so.
--
-- depends: 0001_initial 0002_dead_letters 0003_deletions 0004_row_level_security 0005_catalog 0006_stored_ids 0007_sink_dead_letters 0008_schema_registry 0011_history

DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM sluice_api', current_schema());
    EXECUTE format(
        'ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON TABLES FROM sluice_api',
        current_schema());
END
$$;

GRANT SELECT ON events, event_deletions, dead_letters, api_keys, replay_jobs,
    filter_deletions, deletions, deletion_steps, baselime_datasets, dakkio_buckets,
    dakkio_data_sources, registry_schemas, registry_versions, registry_config,
    ingest_envelopes, event_history TO sluice_api;
GRANT INSERT, UPDATE ON api_keys, replay_jobs TO sluice_api;
GRANT UPDATE ON dead_letters TO sluice_api;
GRANT INSERT ON deletions TO sluice_api;
GRANT INSERT, UPDATE, DELETE ON registry_versions TO sluice_api;
GRANT INSERT ON registry_schemas TO sluice_api;
GRANT INSERT, UPDATE ON registry_config TO sluice_api;
