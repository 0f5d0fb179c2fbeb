-- Dead letters you can list, fix and replay: claims, outcomes, filters, replay jobs.
--
-- A replay claims a pending dead letter (claimed_by/claimed_until) before it
-- publishes, and marks it replayed only after Kafka acknowledged the replay; a
-- claim that outlives its process expires, so the dead letter becomes pending
-- again instead of being stuck.
--
-- depends: 0001_initial

ALTER TABLE dead_letters
    ADD COLUMN claimed_by     text,
    ADD COLUMN claimed_until  timestamptz,
    ADD COLUMN resolved_at    timestamptz,
    ADD COLUMN outcome        jsonb;

-- Listing by status and time within a tenant, and filtering by reason code.
CREATE INDEX dead_letters_by_status
    ON dead_letters (tenant, status, received_at, dead_letter_id);
CREATE INDEX dead_letters_reasons ON dead_letters USING gin (reasons jsonb_path_ops);
CREATE INDEX dead_letters_lineage ON dead_letters (replay_of) WHERE replay_of IS NOT NULL;

-- A bulk replay by filter runs as a job; its state lives here so any API
-- process can answer for it.
CREATE TABLE replay_jobs (
    job_id         uuid        PRIMARY KEY,
    tenant         text        NOT NULL,
    filter         jsonb       NOT NULL,
    dry_run        boolean     NOT NULL DEFAULT false,
    state          text        NOT NULL DEFAULT 'queued'
                               CHECK (state IN ('queued', 'running', 'done', 'failed')),
    total          integer     NOT NULL DEFAULT 0,
    replayed       integer     NOT NULL DEFAULT 0,
    still_invalid  integer     NOT NULL DEFAULT 0,
    failed         integer     NOT NULL DEFAULT 0,
    skipped        integer     NOT NULL DEFAULT 0,
    error          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz,
    heartbeat_at   timestamptz
);
CREATE INDEX replay_jobs_by_tenant ON replay_jobs (tenant, created_at);

ALTER TABLE replay_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON replay_jobs
    USING (tenant = current_setting('sluice.tenant', true))
    WITH CHECK (tenant = current_setting('sluice.tenant', true));

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_api') THEN
        GRANT SELECT, INSERT, UPDATE ON replay_jobs TO sluice_api;
    END IF;
END
$$;
