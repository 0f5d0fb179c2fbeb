-- First writes by COPY straight into `events` (issue 19): the sink stores a batch whose
-- identities are all new with one binary COPY into `events`, not a COPY into its staging
-- table and then an `INSERT ... SELECT` that probes the deletion records per row. It may
-- do so only when no recorded delete could refuse any row of the batch, which it asks once
-- per batch and (tenant, family, partition) with the batch's lowest version there
-- (sinks/writer.py, `_GUARDED`): is any delete by id of that tenant and family, or any
-- delete by filter of that partition, newer than it?
--
-- Deletes by filter answer that from `filter_deletions_by_position` (0003). Deletes by id
-- had no index by version: without this one the question read every deletion record of
-- the tenant (retention records one per event it expires). An entry costs PostgreSQL
-- about a microsecond per recorded deletion, far rarer than stored versions.
--
-- What `events`' own indexes cost and need is in docs/benchmarks.md (sink): both stay.
--
-- depends: 0003_deletions 0018_tenant_leading_keys

CREATE INDEX event_deletions_by_version ON event_deletions (tenant, family, version);
