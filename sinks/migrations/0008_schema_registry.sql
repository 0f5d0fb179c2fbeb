-- The Schema Registry (issue 17, part 1): Confluent-compatible subjects, versions and
-- compatibility settings, shared by every API process.
--
-- Ids are global: one sequence for every tenant. Ids 1-999 are reserved for Sluice's own
-- topic schemas (`schemas/codec.py` SCHEMA_IDS and SUPERSEDED, written by every process
-- since before the registry existed), registered at API start-up with exactly those ids;
-- tenants' schemas are numbered from 1000. Sluice's own rows have tenant '' and are
-- readable by every tenant; a tenant's rows are its own (row-level security as in 0004).
-- Writing a row of tenant '' needs the transaction-local `sluice.registry_system = on`
-- besides `sluice.tenant = ''`, which only the start-up registration sets.
--
-- depends: 0004_row_level_security

CREATE SEQUENCE registry_schema_ids START WITH 1000 MINVALUE 1000;

CREATE TABLE registry_schemas (
    id          integer PRIMARY KEY,
    tenant      text NOT NULL,
    schema_type text NOT NULL CHECK (schema_type IN ('AVRO', 'JSON')),
    schema      text NOT NULL,
    fingerprint bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, schema_type, fingerprint)
);

CREATE TABLE registry_versions (
    tenant     text NOT NULL,
    subject    text NOT NULL,
    version    integer NOT NULL CHECK (version > 0),
    schema_id  integer NOT NULL REFERENCES registry_schemas (id),
    deleted    boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, subject, version)
);
CREATE INDEX registry_versions_by_schema ON registry_versions (schema_id);

CREATE TABLE registry_config (
    tenant        text NOT NULL,
    subject       text NOT NULL,  -- '' is the tenant's global level
    compatibility text NOT NULL CHECK (compatibility IN (
        'NONE', 'BACKWARD', 'BACKWARD_TRANSITIVE', 'FORWARD', 'FORWARD_TRANSITIVE',
        'FULL', 'FULL_TRANSITIVE')),
    PRIMARY KEY (tenant, subject)
);

-- Writes (and deletes) reach only the caller's own rows; Sluice's rows are also readable.
DO $$
DECLARE
    t text;
    own text := '(tenant = current_setting(''sluice.tenant'', true)'
                ' AND (tenant <> '''' OR current_setting(''sluice.registry_system'', true) = ''on''))';
BEGIN
    FOREACH t IN ARRAY ARRAY['registry_schemas', 'registry_versions', 'registry_config'] LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO sluice_api', t);
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING %s WITH CHECK %s', t, own, own);
        EXECUTE format('CREATE POLICY sluice_schemas_readable ON %I FOR SELECT'
                       ' USING (tenant = '''')', t);
    END LOOP;
END
$$;
GRANT USAGE, SELECT ON SEQUENCE registry_schema_ids TO sluice_api;
