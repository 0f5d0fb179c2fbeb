-- Deletes that reach every copy (invariant 4): receipts, deletes by filter, and the
-- partition of each stored event.
--
-- A delete by filter sits at one position in every partition of ingest.raw; in
-- partition p it removes the matching events whose version (a position in p) is
-- older. So each stored event keeps its partition, and each applied filter is kept
-- with its partition and version: an older version presented again later (a
-- redelivery, a sink restarted from an earlier offset) is checked against it and
-- stays gone.
--
-- depends: 0001_initial

-- NULL only for rows stored before this migration; a delete by filter treats
-- them as older than itself in every partition (they were accepted before it).
ALTER TABLE events ADD COLUMN kafka_partition integer;

-- When the door accepted the delete: dead letters rejected at the door carry no
-- position, so their time decides whether a delete by id covers them.
ALTER TABLE event_deletions ADD COLUMN requested_at timestamptz;

CREATE TABLE filter_deletions (
    tenant           text        NOT NULL,
    family           text        NOT NULL,
    deletion_id      text        NOT NULL,
    kafka_partition  integer     NOT NULL,
    version          bigint      NOT NULL,
    types            text[]      NOT NULL DEFAULT '{}',
    sources          text[]      NOT NULL DEFAULT '{}',
    time_from        timestamptz,
    time_to          timestamptz,
    requested_at     timestamptz NOT NULL,
    applied_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, deletion_id, kafka_partition)
);
CREATE INDEX filter_deletions_by_position
    ON filter_deletions (tenant, family, kafka_partition, version);

-- One receipt per delete request, written by the door before it publishes.
-- `expected` counts the steps that finish it: one per distinct id for a delete
-- by id, one per partition for a delete by filter.
CREATE TABLE deletions (
    deletion_id   text        PRIMARY KEY,
    tenant        text        NOT NULL,
    family        text        NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('ids', 'filter')),
    target        jsonb       NOT NULL,
    expected      integer     NOT NULL CHECK (expected >= 0),
    requested_at  timestamptz NOT NULL
);
CREATE INDEX deletions_by_tenant ON deletions (tenant, requested_at);

-- What the sink did for a receipt, one row per id or partition, written in the
-- same transaction as the delete itself (a redelivery finds the row and adds nothing).
CREATE TABLE deletion_steps (
    deletion_id           text        NOT NULL,
    unit                  text        NOT NULL,
    tenant                text        NOT NULL,
    events_removed        integer     NOT NULL DEFAULT 0,
    dead_letters_removed  integer     NOT NULL DEFAULT 0,
    applied_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (deletion_id, unit)
);

CREATE INDEX dead_letters_by_identity
    ON dead_letters (tenant, family, event_id) WHERE event_id IS NOT NULL;

-- Row-level security like every tenant-owned table (see 0004_row_level_security):
-- the API's role sees only the caller's tenant. The role is created here too when
-- missing, so these grants hold whichever migration runs first.
ALTER TABLE deletions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON deletions
    USING (tenant = current_setting('sluice.tenant', true))
    WITH CHECK (tenant = current_setting('sluice.tenant', true));
ALTER TABLE deletion_steps ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON deletion_steps
    USING (tenant = current_setting('sluice.tenant', true))
    WITH CHECK (tenant = current_setting('sluice.tenant', true));
ALTER TABLE filter_deletions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON filter_deletions
    USING (tenant = current_setting('sluice.tenant', true))
    WITH CHECK (tenant = current_setting('sluice.tenant', true));

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_api') THEN
        CREATE ROLE sluice_api NOLOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
END
$$;
GRANT SELECT, INSERT ON deletions TO sluice_api;
GRANT SELECT ON deletion_steps, filter_deletions TO sluice_api;
