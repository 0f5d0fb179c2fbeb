-- "Where is my event?": what an event's history needs beyond what the other tables keep.
--
-- The current version of an identity is its row in `events` (version = its position in
-- ingest.raw, partition, received and stored times). Two things are added, both inside
-- the sink's transaction and both batched:
--
-- * `ingest_envelopes`: one row per envelope (one request's events for one partition) the
--   sink stored versions of, COPYed once per batch (sinks/history.py): the request (or
--   the dead letter a replay brought back), and the ids it carried. A version finds its
--   request by its position (partition, offset = version >> 20); a request finds its
--   events through `event_ids`. Rows per request: at most the partition count.
-- * `event_history`: a version that leaves `events` (replaced by a newer one, or deleted)
--   is kept here by statement-level triggers with transition tables: one INSERT … SELECT
--   per sink statement, nothing at all for versions that are only inserted (the common
--   case, and the plain-insert path of sinks/writer.py has no UPDATE to fire them).
--
-- No event content is kept in either. No unique keys (COPY cannot skip duplicates; a
-- redelivered batch writes its envelope rows again), so readers collapse them
-- (store/history.py). The sink prunes both after SLUICE_HISTORY_RETENTION_SECONDS.
-- Dead letters keep the request that brought them, and a delete keeps its receipt.
--
-- depends: 0001_initial 0002_dead_letters 0003_deletions 0004_row_level_security

CREATE TABLE ingest_envelopes (
    tenant           text        NOT NULL,
    family           text        NOT NULL,
    kafka_partition  integer     NOT NULL,
    envelope_offset  bigint      NOT NULL,
    request_id       text,
    replay_of        uuid,
    received_at      timestamptz NOT NULL,
    event_ids        text[]      NOT NULL,
    stored_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ingest_envelopes_by_position
    ON ingest_envelopes (tenant, kafka_partition, envelope_offset);
CREATE INDEX ingest_envelopes_by_request
    ON ingest_envelopes (tenant, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX ingest_envelopes_by_age ON ingest_envelopes USING brin (stored_at);

CREATE TABLE event_history (
    tenant           text        NOT NULL,
    family           text        NOT NULL,
    event_id         text        NOT NULL,
    version          bigint      NOT NULL,
    kafka_partition  integer,
    received_at      timestamptz NOT NULL,
    stored_at        timestamptz NOT NULL,
    left_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_history_by_identity ON event_history (tenant, family, event_id, version);
CREATE INDEX event_history_by_age ON event_history USING brin (left_at);

CREATE FUNCTION sluice_keep_left_versions() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_history (tenant, family, event_id, version, kafka_partition,
                               received_at, stored_at)
    SELECT o.tenant, o.family, o.event_id, o.version, o.kafka_partition, o.received_at,
           o.stored_at
    FROM left_rows o;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_keep_replaced AFTER UPDATE ON events
    REFERENCING OLD TABLE AS left_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_keep_left_versions();
CREATE TRIGGER events_keep_deleted AFTER DELETE ON events
    REFERENCING OLD TABLE AS left_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_keep_left_versions();

ALTER TABLE dead_letters ADD COLUMN request_id text;
CREATE INDEX dead_letters_by_request
    ON dead_letters (tenant, request_id) WHERE request_id IS NOT NULL;

ALTER TABLE event_deletions ADD COLUMN deletion_id text;

ALTER TABLE ingest_envelopes ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ingest_envelopes
    USING (tenant = current_setting('sluice.tenant', true))
    WITH CHECK (tenant = current_setting('sluice.tenant', true));
ALTER TABLE event_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON event_history
    USING (tenant = current_setting('sluice.tenant', true))
    WITH CHECK (tenant = current_setting('sluice.tenant', true));

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_api') THEN
        GRANT SELECT ON ingest_envelopes, event_history TO sluice_api;
    END IF;
END
$$;
