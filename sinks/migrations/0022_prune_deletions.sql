-- Deletion records that can no longer matter leave (issue 20), through two functions the
-- retention runner calls (ingest/pruning.py decides the horizon from Kafka itself).
--
-- A record of a delete (`event_deletions`: an identity deleted at a version;
-- `filter_deletions`: a delete by filter at a version of one partition) keeps out older
-- versions. It may go only when nothing can present one any more:
--   * `ingest.raw` no longer holds an envelope older than it: its version's offset
--     (`version >> 20`, schemas/versions.py) is below the partition's earliest offset, so
--     no worker can process an older version again (for `event_deletions`, whose partition
--     is not stored, below the earliest offset of every partition);
--   * it is older than `events.dlq`'s retention (a dead letter rejected before the delete,
--     read late or replayed from Kafka, is checked against it) and than what compaction of
--     `events` may still hold (segment.ms + delete.retention.ms).
-- The caller passes both bounds; each call removes at most `max_rows`.
--
-- depends: 0003_deletions 0013_least_privilege

CREATE FUNCTION sluice_prune_event_deletions(before timestamptz, below_offset bigint,
                                             max_rows integer)
    RETURNS integer LANGUAGE sql SECURITY DEFINER AS $$
    WITH doomed AS MATERIALIZED (
        SELECT tenant, family, event_id FROM event_deletions
        WHERE deleted_at < before AND (version >> 20) < below_offset
        ORDER BY deleted_at LIMIT max_rows FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM event_deletions d USING doomed
        WHERE d.tenant = doomed.tenant AND d.family = doomed.family
          AND d.event_id = doomed.event_id
        RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;

CREATE FUNCTION sluice_prune_filter_deletions(on_partition integer, before timestamptz,
                                              below_offset bigint, max_rows integer)
    RETURNS integer LANGUAGE sql SECURITY DEFINER AS $$
    WITH doomed AS MATERIALIZED (
        SELECT tenant, deletion_id, kafka_partition FROM filter_deletions
        WHERE kafka_partition = on_partition AND applied_at < before
          AND (version >> 20) < below_offset
        ORDER BY applied_at LIMIT max_rows FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM filter_deletions f USING doomed
        WHERE f.tenant = doomed.tenant AND f.deletion_id = doomed.deletion_id
          AND f.kafka_partition = doomed.kafka_partition
        RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION sluice_prune_event_deletions(timestamptz, bigint, integer)'
                   ' SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION sluice_prune_filter_deletions(integer, timestamptz, bigint,'
                   ' integer) SET search_path = %I, pg_temp', current_schema());
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_api') THEN
        GRANT EXECUTE ON FUNCTION sluice_prune_event_deletions(timestamptz, bigint, integer)
            TO sluice_api;
        GRANT EXECUTE ON FUNCTION
            sluice_prune_filter_deletions(integer, timestamptz, bigint, integer) TO sluice_api;
    END IF;
END
$$;

REVOKE ALL ON FUNCTION sluice_prune_event_deletions(timestamptz, bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION sluice_prune_filter_deletions(integer, timestamptz, bigint, integer)
    FROM PUBLIC;
