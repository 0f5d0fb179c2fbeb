-- "Where is my event?": what an event's history needs beyond what the other tables keep.
--
-- `events` holds only the current version of an identity. The sink adds one
-- `event_history` row per version it stores, in the same transaction, COPYed once per
-- batch (sinks/history.py): the request (or replay of a dead letter) that brought it,
-- its partition (its offset and index in ingest.raw are its version, schemas/versions.py),
-- when the door received it and when the sink stored it. No event content is kept here.
-- There is no unique key, so COPY can be used; a redelivered batch writes its rows
-- again and readers collapse them (store/history.py). Rows older than
-- SLUICE_HISTORY_RETENTION_SECONDS are pruned by the sink.
--
-- Dead letters keep the request that brought them, and a delete by id or by filter keeps
-- its receipt beside the deletion's version, so a history can name both.
--
-- depends: 0001_initial 0002_dead_letters 0003_deletions 0004_row_level_security

CREATE TABLE event_history (
    tenant           text        NOT NULL,
    family           text        NOT NULL,
    event_id         text        NOT NULL,
    version          bigint      NOT NULL,
    kafka_partition  integer,
    request_id       text,
    replay_of        uuid,
    received_at      timestamptz NOT NULL,
    stored_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_history_by_identity ON event_history (tenant, family, event_id, version);
CREATE INDEX event_history_by_request
    ON event_history (tenant, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX event_history_by_age ON event_history USING brin (stored_at);

ALTER TABLE dead_letters ADD COLUMN request_id text;
CREATE INDEX dead_letters_by_request
    ON dead_letters (tenant, request_id) WHERE request_id IS NOT NULL;

ALTER TABLE event_deletions ADD COLUMN deletion_id text;

ALTER TABLE event_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON event_history
    USING (tenant = current_setting('sluice.tenant', true))
    WITH CHECK (tenant = current_setting('sluice.tenant', true));

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_api') THEN
        GRANT SELECT ON event_history TO sluice_api;
    END IF;
END
$$;
