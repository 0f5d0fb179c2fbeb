-- Data contracts (issue 17 part 2): a tenant's JSON Schema per event subject
-- (`native.<type>`, `baselime.<dataset>`, `dakkio.<dataSourceId>`, `dynatrace.<type>`),
-- enforced by the door and the stream (schemas/contracts.py).
--
-- * `events.schema_id`: the registry id of the contract an event satisfied when the
--   stream processed it; NULL when its subject had none (so adding it rewrites nothing).
-- * `registry_generation`: a sequence advanced by every statement that changes
--   `registry_versions` (register, soft or permanent delete). Every API and worker
--   process polls its value (`sluice_registry_generation()`, one cheap read a second)
--   and reloads its contracts when it moved: a new version is enforced within about a
--   second, without a restart and without a per-event query.
-- * `sluice_data_contracts()`: the latest live JSON version of every tenant's contract
--   subject, across tenants. SECURITY DEFINER, as `sluice_find_api_key` (0004): the
--   API's role reads every tenant's contracts only through it, never the rows themselves.
--
-- depends: 0001_initial 0004_row_level_security 0008_schema_registry 0013_least_privilege

ALTER TABLE events ADD COLUMN schema_id integer;

CREATE SEQUENCE registry_generation;

CREATE FUNCTION sluice_registry_changed() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    PERFORM nextval('registry_generation');
    RETURN NULL;
END
$$;

CREATE TRIGGER registry_versions_changed
    AFTER INSERT OR UPDATE OR DELETE ON registry_versions
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_registry_changed();

CREATE FUNCTION sluice_registry_generation() RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER
    AS $$ SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM registry_generation $$;

CREATE FUNCTION sluice_data_contracts()
    RETURNS TABLE (tenant text, subject text, version integer, schema_id integer, schema text)
    LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT DISTINCT ON (v.tenant, v.subject)
           v.tenant, v.subject, v.version, v.schema_id, s.schema
    FROM registry_versions v JOIN registry_schemas s ON s.id = v.schema_id
    WHERE NOT v.deleted AND v.tenant <> '' AND s.schema_type = 'JSON'
      AND split_part(v.subject, '.', 1) IN ('native', 'baselime', 'dakkio', 'dynatrace')
    ORDER BY v.tenant, v.subject, v.version DESC
$$;

DO $$
BEGIN
    -- A SECURITY DEFINER function must not resolve names through a schema others can write.
    EXECUTE format('ALTER FUNCTION sluice_registry_changed() SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION sluice_registry_generation() SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION sluice_data_contracts() SET search_path = %I, pg_temp',
                   current_schema());
END
$$;

REVOKE ALL ON FUNCTION sluice_registry_changed() FROM PUBLIC;
REVOKE ALL ON FUNCTION sluice_registry_generation() FROM PUBLIC;
REVOKE ALL ON FUNCTION sluice_data_contracts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sluice_registry_generation() TO sluice_api;
GRANT EXECUTE ON FUNCTION sluice_data_contracts() TO sluice_api;
