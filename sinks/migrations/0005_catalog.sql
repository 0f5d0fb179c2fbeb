-- Catalogs the seed-compatible front doors check before they accept events:
-- Baselime datasets, dakkio buckets and the data sources inside them. Created
-- with `sluice datasets|buckets|datasources create`. Tenant-scoped like every
-- tenant-owned table (the tenant leads each primary key; two tenants may use
-- the same bucket id), and under the same row-level-security policy.

CREATE TABLE baselime_datasets (
    tenant      text        NOT NULL,
    name        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, name)
);

CREATE TABLE dakkio_buckets (
    tenant       text        NOT NULL,
    bucket_id    text        NOT NULL CHECK (bucket_id ~ '^[0-9a-f]{24}$'),
    name         text        NOT NULL,
    description  text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, bucket_id)
);

CREATE TABLE dakkio_data_sources (
    tenant          text        NOT NULL,
    bucket_id       text        NOT NULL,
    data_source_id  text        NOT NULL CHECK (data_source_id ~ '^[0-9a-f]{24}$'),
    name            text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, bucket_id, data_source_id),
    FOREIGN KEY (tenant, bucket_id) REFERENCES dakkio_buckets (tenant, bucket_id)
        ON DELETE CASCADE
);

ALTER TABLE baselime_datasets ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON baselime_datasets
    USING (tenant = current_setting('sluice.tenant', true))
    WITH CHECK (tenant = current_setting('sluice.tenant', true));

ALTER TABLE dakkio_buckets ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON dakkio_buckets
    USING (tenant = current_setting('sluice.tenant', true))
    WITH CHECK (tenant = current_setting('sluice.tenant', true));

ALTER TABLE dakkio_data_sources ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON dakkio_data_sources
    USING (tenant = current_setting('sluice.tenant', true))
    WITH CHECK (tenant = current_setting('sluice.tenant', true));

-- The API reads these as `sluice_api` (migration 0004) where that role exists.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_api') THEN
        GRANT SELECT ON baselime_datasets, dakkio_buckets, dakkio_data_sources TO sluice_api;
    END IF;
END
$$;
