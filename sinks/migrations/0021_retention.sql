-- Retention (issue 20): how long a tenant keeps its events and dead letters.
--
-- One row per (tenant, kind, family, event_type): `kind` events or dead_letters,
-- `event_type` '' for the whole family (events only may name a type). Where no row
-- applies, the settings' defaults do (SLUICE_RETENTION_EVENTS_DAYS,
-- SLUICE_RETENTION_DEAD_LETTERS_DAYS; 0 keeps forever). The retention runner
-- (ingest/retention.py) expires events by their event `time` through deletes by
-- filter (so Kafka's compacted `events` topic forgets them too, with a receipt) and
-- dead letters by `received_at` straight from this table, both in bounded steps.
--
-- depends: 0001_initial 0004_row_level_security 0013_least_privilege

CREATE TABLE retention_policies (
    tenant        text        NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('events', 'dead_letters')),
    family        text        NOT NULL,
    event_type    text        NOT NULL DEFAULT '',
    keep_seconds  bigint      NOT NULL CHECK (keep_seconds > 0),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    last_run_at   timestamptz,
    last_cut      timestamptz,
    PRIMARY KEY (tenant, kind, family, event_type),
    CHECK (kind = 'events' OR event_type = '')
);

ALTER TABLE retention_policies ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON retention_policies
    USING (tenant = current_setting('sluice.tenant', true))
    WITH CHECK (tenant = current_setting('sluice.tenant', true));

-- The runner visits every tenant that has a policy or a key (the defaults apply to
-- those); the API's role reads that list only through this function.
CREATE FUNCTION sluice_retention_tenants() RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT tenant FROM retention_policies UNION SELECT tenant FROM api_keys ORDER BY 1
$$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION sluice_retention_tenants() SET search_path = %I, pg_temp',
                   current_schema());
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_api') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON retention_policies TO sluice_api;
        -- expired dead letters leave PostgreSQL (the runner, under the tenant's policy)
        GRANT DELETE ON dead_letters TO sluice_api;
        GRANT EXECUTE ON FUNCTION sluice_retention_tenants() TO sluice_api;
    END IF;
END
$$;

REVOKE ALL ON FUNCTION sluice_retention_tenants() FROM PUBLIC;

-- One row per retention run of a tenant (periodic or asked for): what it removed and the
-- deletion receipts of its steps (`GET /v1/deletions/{id}` for each). The newest 100 of a
-- tenant are kept.
CREATE TABLE retention_runs (
    tenant                text        NOT NULL,
    run_id                uuid        NOT NULL,
    state                 text        NOT NULL DEFAULT 'running'
                                      CHECK (state IN ('running', 'done', 'failed')),
    started_at            timestamptz NOT NULL DEFAULT now(),
    finished_at           timestamptz,
    events_removed        bigint      NOT NULL DEFAULT 0,
    dead_letters_removed  bigint      NOT NULL DEFAULT 0,
    receipts              jsonb       NOT NULL DEFAULT '[]',
    error                 text,
    PRIMARY KEY (tenant, run_id)
);
CREATE INDEX retention_runs_by_time ON retention_runs (tenant, started_at);

ALTER TABLE retention_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON retention_runs
    USING (tenant = current_setting('sluice.tenant', true))
    WITH CHECK (tenant = current_setting('sluice.tenant', true));

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_api') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON retention_runs TO sluice_api;
    END IF;
END
$$;
