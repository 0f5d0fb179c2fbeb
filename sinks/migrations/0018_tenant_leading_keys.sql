-- Every tenant table's keys and indexes lead with the tenant (issue 20): ready to be
-- distributed by tenant on Citus (docs/design.md#running-on-citus).
--
-- A distributed table can only enforce a primary key or unique constraint that contains
-- its distribution column, and a tenant's statements stay on one node only when every
-- index they use starts with it. So:
--
-- * primary keys: dead_letters (tenant, dead_letter_id), replay_jobs (tenant, job_id),
--   deletions (tenant, deletion_id), deletion_steps (tenant, deletion_id, unit). Their
--   ids stay unique where they were (UUIDs, a door-made receipt id), now within their
--   tenant as far as PostgreSQL checks; every statement names the tenant with the id
--   (the `ON CONFLICT` targets of sinks/writer.py and sinks/deletions.py follow).
--   `api_keys` and `console_sessions` keep theirs: both are found by a secret before the
--   tenant is known, so they are reference tables, not distributed.
-- * the other indexes: the BRIN indexes the pruning reads (`*_by_age`) and the GIN index
--   of reason codes become multi-column with the tenant first. A multi-column BRIN or GIN
--   index serves a condition on any of its columns, so pruning by age and filtering by
--   reason use them as before; GIN needs `btree_gin` for a text column (a trusted
--   extension: the database's owner may create it). `breaker_states_by_worker` goes: the
--   table holds a few rows per worker, and its primary key already leads with the tenant.
--
-- Which tables are tenant, reference or local tables is listed once, in store/layout.py;
-- tests/store/test_tenant_layout.py checks the catalog against it, so a later migration
-- that adds a table or an index without the tenant first fails there.
--
-- Building a primary key locks its table while the index is built: on a large
-- dead_letters, run this migration in a quiet moment.
--
-- depends: 0002_dead_letters 0003_deletions 0011_history 0015_overview 0017_data_contracts

CREATE EXTENSION IF NOT EXISTS btree_gin;

ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_pkey,
    ADD PRIMARY KEY (tenant, dead_letter_id);
ALTER TABLE replay_jobs DROP CONSTRAINT replay_jobs_pkey, ADD PRIMARY KEY (tenant, job_id);
ALTER TABLE deletions DROP CONSTRAINT deletions_pkey, ADD PRIMARY KEY (tenant, deletion_id);
ALTER TABLE deletion_steps DROP CONSTRAINT deletion_steps_pkey,
    ADD PRIMARY KEY (tenant, deletion_id, unit);

DROP INDEX dead_letters_reasons;
CREATE INDEX dead_letters_reasons ON dead_letters USING gin (tenant, reasons jsonb_path_ops);
DROP INDEX dead_letters_lineage;
CREATE INDEX dead_letters_lineage ON dead_letters (tenant, replay_of) WHERE replay_of IS NOT NULL;

DROP INDEX ingest_envelopes_by_age;
CREATE INDEX ingest_envelopes_by_age ON ingest_envelopes USING brin (tenant, stored_at);
DROP INDEX event_history_by_age;
CREATE INDEX event_history_by_age ON event_history USING brin (tenant, left_at);
DROP INDEX door_counts_by_age;
CREATE INDEX door_counts_by_age ON door_counts USING brin (tenant, bucket);
DROP INDEX sink_latency_by_age;
CREATE INDEX sink_latency_by_age ON sink_latency USING brin (tenant, bucket);

DROP INDEX breaker_states_by_worker;
