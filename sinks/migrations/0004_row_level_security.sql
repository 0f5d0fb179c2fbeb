-- Row-level security on every tenant-owned table: the database's half of invariant 5.
--
-- The API connects as (or SET ROLEs to) `sluice_api`, which does not bypass
-- row-level security. Each tenant-owned table admits only rows whose `tenant`
-- equals the transaction-local setting `sluice.tenant`, which
-- `store/tenancy.py::tenant_connection` sets from the caller's key. Unset, it
-- admits nothing.
--
-- The sink, `sluice migrate` and the `sluice keys` CLI connect with DATABASE_URL
-- as the tables' owner. Owners are not subject to row-level security (it is not
-- FORCEd), which is what a process writing every tenant's rows needs; in
-- production give that login the ownership or BYPASSRLS, and no other process.
--
-- The one cross-tenant read the API needs is a key lookup by prefix, before it
-- knows the tenant: `sluice_find_api_key(prefix)` runs as the owner and returns
-- at most that one row.
--
-- depends: 0001_initial 0002_dead_letters 0003_deletions

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_api') THEN
        CREATE ROLE sluice_api NOLOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
    -- The migrating login may SET ROLE sluice_api, so one DATABASE_URL suffices locally.
    BEGIN
        GRANT sluice_api TO CURRENT_USER;
    EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
        RAISE NOTICE 'could not grant sluice_api to %; grant it to the API login', current_user;
    END;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO sluice_api', current_schema());
    EXECUTE format(
        'ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO sluice_api',
        current_schema());
    EXECUTE format(
        'ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO sluice_api',
        current_schema());
END
$$;

-- Every table of this schema with a `tenant` column present now (events,
-- event_deletions, dead_letters, api_keys, and those of 0002 and 0003:
-- replay_jobs, filter_deletions, deletions, deletion_steps) gets the API's grants,
-- row-level security and the `tenant_isolation` policy (unless it has one already).
-- Later migrations add their own; tests/integration/test_tenants.py checks that
-- every table with a tenant column has the policy.
DO $$
DECLARE
    owned record;
BEGIN
    FOR owned IN
        SELECT c.relname
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant' AND NOT a.attisdropped
        WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO sluice_api', owned.relname);
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', owned.relname);
        IF NOT EXISTS (
            SELECT 1 FROM pg_policies
            WHERE schemaname = current_schema() AND tablename = owned.relname
              AND policyname = 'tenant_isolation'
        ) THEN
            EXECUTE format(
                'CREATE POLICY tenant_isolation ON %I'
                ' USING (tenant = current_setting(''sluice.tenant'', true))'
                ' WITH CHECK (tenant = current_setting(''sluice.tenant'', true))',
                owned.relname);
        END IF;
    END LOOP;
END
$$;

CREATE FUNCTION sluice_find_api_key(key_prefix text) RETURNS SETOF api_keys
    LANGUAGE sql STABLE SECURITY DEFINER
    AS $$ SELECT * FROM api_keys WHERE prefix = key_prefix $$;

DO $$
BEGIN
    -- A SECURITY DEFINER function must not resolve names through a schema others can write.
    EXECUTE format('ALTER FUNCTION sluice_find_api_key(text) SET search_path = %I, pg_temp',
                   current_schema());
END
$$;

REVOKE ALL ON FUNCTION sluice_find_api_key(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sluice_find_api_key(text) TO sluice_api;
