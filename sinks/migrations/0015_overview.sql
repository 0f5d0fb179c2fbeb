-- The console's figures (GET /v1/overview): what the running processes record about
-- themselves, small, additive and per 10-second bucket, so any number of API, worker and
-- sink processes write side by side and any API process reads the sum.
--
-- * `door_counts`: events accepted and rejected at the door per (tenant, bucket, family).
--   Each API process counts in memory (ingest/tally.py) and adds its counts every
--   SLUICE_FIGURES_FLUSH_SECONDS in one statement through `sluice_add_door_counts`
--   (below): the upsert adds to the bucket's row, so two processes' counts sum.
-- * `sink_latency`: acceptance → queryable, as a histogram per (tenant, bucket): how many
--   events the sink made queryable (committed) in the bucket, per latency bin
--   (store/latency_bins.py: 8 bins a doubling of milliseconds). One upsert per sink poll;
--   p50/p99 over any window is a sum of bins, whatever the number of sinks or events.
-- * `consumer_lag`: the worker group's and the sink group's lag, measured by their own
--   processes from Kafka (runtime.metrics.LagProbe) and recorded every
--   SLUICE_FIGURES_REPORT_SECONDS: one row per (consumer, bucket). The lag is the group's,
--   the same for every member, so several members overwrite one row with equal figures.
--   Pipeline-wide: no tenant column, every tenant reads it.
-- * `breaker_states`: the DLQ circuit breaker's keys that are not closed, per worker
--   process; each worker replaces its own rows at every report, so a dead worker's rows
--   stop being refreshed (`reported_at`) and readers leave them out.
--
-- The sink prunes all four after SLUICE_FIGURES_RETENTION_SECONDS (sinks/consumer.py).
--
-- depends: 0004_row_level_security 0013_least_privilege

CREATE TABLE door_counts (
    tenant    text        NOT NULL,
    bucket    timestamptz NOT NULL,
    family    text        NOT NULL,
    accepted  bigint      NOT NULL DEFAULT 0,
    rejected  bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, bucket, family)
);
CREATE INDEX door_counts_by_age ON door_counts USING brin (bucket);

CREATE TABLE sink_latency (
    tenant    text        NOT NULL,
    bucket    timestamptz NOT NULL,
    bin       smallint    NOT NULL,
    events    bigint      NOT NULL,
    PRIMARY KEY (tenant, bucket, bin)
);
CREATE INDEX sink_latency_by_age ON sink_latency USING brin (bucket);

CREATE TABLE consumer_lag (
    consumer     text        NOT NULL CHECK (consumer IN ('worker', 'sink')),
    bucket       timestamptz NOT NULL,
    lag          bigint      NOT NULL,
    measured_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, bucket)
);

CREATE TABLE breaker_states (
    tenant           text        NOT NULL,
    worker           text        NOT NULL,
    kafka_partition  integer     NOT NULL,
    family           text        NOT NULL,
    state            text        NOT NULL,
    held             integer     NOT NULL,
    since            timestamptz NOT NULL,
    reason           text        NOT NULL,
    reported_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, worker, kafka_partition, family)
);
CREATE INDEX breaker_states_by_worker ON breaker_states (worker);

ALTER TABLE door_counts ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON door_counts
    USING (tenant = current_setting('sluice.tenant', true))
    WITH CHECK (tenant = current_setting('sluice.tenant', true));
ALTER TABLE sink_latency ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sink_latency
    USING (tenant = current_setting('sluice.tenant', true))
    WITH CHECK (tenant = current_setting('sluice.tenant', true));
ALTER TABLE breaker_states ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON breaker_states
    USING (tenant = current_setting('sluice.tenant', true))
    WITH CHECK (tenant = current_setting('sluice.tenant', true));

-- One statement adds one flush of every tenant's counts: the API's role holds no write on
-- `door_counts` (row-level security would confine a plain INSERT to one tenant), only this
-- function, which can add to counts and do nothing else.
CREATE FUNCTION sluice_add_door_counts(
    tenants text[], buckets timestamptz[], families text[], accepted bigint[],
    rejected bigint[]
) RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER
    AS $$
    INSERT INTO door_counts AS c (tenant, bucket, family, accepted, rejected)
    SELECT * FROM unnest(tenants, buckets, families, accepted, rejected)
    ON CONFLICT (tenant, bucket, family) DO UPDATE
        SET accepted = c.accepted + EXCLUDED.accepted,
            rejected = c.rejected + EXCLUDED.rejected
$$;

DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION sluice_add_door_counts(text[], timestamptz[], text[], bigint[], bigint[])'
        ' SET search_path = %I, pg_temp', current_schema());
END
$$;

REVOKE ALL ON FUNCTION sluice_add_door_counts(text[], timestamptz[], text[], bigint[], bigint[])
    FROM PUBLIC;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_api') THEN
        GRANT SELECT ON door_counts, sink_latency, consumer_lag, breaker_states TO sluice_api;
        GRANT EXECUTE
            ON FUNCTION sluice_add_door_counts(text[], timestamptz[], text[], bigint[], bigint[])
            TO sluice_api;
    END IF;
END
$$;

