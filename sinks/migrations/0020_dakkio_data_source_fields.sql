-- dakkio data sources through the dakkio door (POST/GET/PUT /dakkio/api/buckets/{id}/sources):
-- the fields dakkio's "Create Data Source" defines beside the name. The data source's
-- `schema` is not stored here: it is the latest version of the registry subject
-- `dakkio.<dataSourceId>` (a JSON Schema, producer_api/families/dakkio_sources.py), so the
-- door and the stream enforce it like any data contract.
--
-- The API's role (0013) may now create and update data sources, under row-level security
-- (0005's `tenant_isolation` policy), as `sluice datasources create` (the owner) always could.
--
-- depends: 0005_catalog 0013_least_privilege

ALTER TABLE dakkio_data_sources
    ADD COLUMN source_type  text        NOT NULL DEFAULT 'sensor',
    ADD COLUMN description  text        NOT NULL DEFAULT '',
    ADD COLUMN downsampling boolean     NOT NULL DEFAULT true,
    ADD COLUMN updated_at   timestamptz NOT NULL DEFAULT now();

UPDATE dakkio_data_sources SET updated_at = created_at;

GRANT INSERT, UPDATE ON dakkio_data_sources TO sluice_api;
