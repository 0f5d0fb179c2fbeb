-- Receipts and jobs that can no longer matter leave (issue 20), through three functions the
-- retention runner calls after it prunes the deletion records (ingest/pruning.py decides
-- the cut: the older of the deletion records' time horizon, tied to `ingest.raw`'s and the
-- other topics' retention, and `SLUICE_RECEIPTS_KEEP_DAYS`).
--
--   * a deletion receipt (`deletions` and its `deletion_steps`) goes once it is finished,
--     its last step was applied before the cut, and no deletion record still names it: no
--     `filter_deletions` row of it and no `event_deletions` row whose `deletion_id` is it.
--     While one does, it still keeps older versions out, and its receipt stays with it. A
--     pending receipt stays (a delete the sink never finished is for an operator to see);
--   * a replay or heal job goes once it is done or failed before the cut; a queued or
--     running one never;
--   * a retention run likewise (the newest 100 per tenant are bounded already).
--
-- `event_deletions_by_receipt` finds the records of one receipt (a delete by filter writes
-- one per identity it removed); it leads with the tenant like every tenant index (0018).
-- Each call removes at most `max_rows` receipts, jobs or runs.
--
-- depends: 0003_deletions 0011_history 0019_heal_jobs 0021_retention 0022_prune_deletions

CREATE INDEX event_deletions_by_receipt ON event_deletions (tenant, deletion_id)
    WHERE deletion_id IS NOT NULL;

CREATE FUNCTION sluice_prune_receipts(before timestamptz, max_rows integer)
    RETURNS integer LANGUAGE sql SECURITY DEFINER AS $$
    WITH doomed AS MATERIALIZED (
        SELECT d.tenant, d.deletion_id FROM deletions d
        WHERE d.requested_at < before
          AND (SELECT count(*) FROM deletion_steps s
               WHERE s.tenant = d.tenant AND s.deletion_id = d.deletion_id) >= d.expected
          AND NOT EXISTS (SELECT 1 FROM deletion_steps s
                          WHERE s.tenant = d.tenant AND s.deletion_id = d.deletion_id
                            AND s.applied_at >= before)
          AND NOT EXISTS (SELECT 1 FROM filter_deletions f
                          WHERE f.tenant = d.tenant AND f.deletion_id = d.deletion_id)
          AND NOT EXISTS (SELECT 1 FROM event_deletions e
                          WHERE e.tenant = d.tenant AND e.deletion_id = d.deletion_id)
        LIMIT max_rows FOR UPDATE OF d SKIP LOCKED
    ), steps AS (
        DELETE FROM deletion_steps s USING doomed
        WHERE s.tenant = doomed.tenant AND s.deletion_id = doomed.deletion_id
    ), gone AS (
        DELETE FROM deletions d USING doomed
        WHERE d.tenant = doomed.tenant AND d.deletion_id = doomed.deletion_id
        RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;

CREATE FUNCTION sluice_prune_replay_jobs(before timestamptz, max_rows integer)
    RETURNS integer LANGUAGE sql SECURITY DEFINER AS $$
    WITH doomed AS MATERIALIZED (
        SELECT tenant, job_id FROM replay_jobs
        WHERE state IN ('done', 'failed') AND finished_at < before
        LIMIT max_rows FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM replay_jobs j USING doomed
        WHERE j.tenant = doomed.tenant AND j.job_id = doomed.job_id
        RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;

CREATE FUNCTION sluice_prune_retention_runs(before timestamptz, max_rows integer)
    RETURNS integer LANGUAGE sql SECURITY DEFINER AS $$
    WITH doomed AS MATERIALIZED (
        SELECT tenant, run_id FROM retention_runs
        WHERE state IN ('done', 'failed') AND finished_at < before
        LIMIT max_rows FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM retention_runs r USING doomed
        WHERE r.tenant = doomed.tenant AND r.run_id = doomed.run_id
        RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;

DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['sluice_prune_receipts', 'sluice_prune_replay_jobs',
                              'sluice_prune_retention_runs'] LOOP
        EXECUTE format('ALTER FUNCTION %I(timestamptz, integer) SET search_path = %I, pg_temp',
                       fn, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %I(timestamptz, integer) FROM PUBLIC', fn);
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_api') THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %I(timestamptz, integer) TO sluice_api',
                           fn);
        END IF;
    END LOOP;
END
$$;
