-- Console sessions: signing in to /console with an API key makes one (producer_api/console).
--
-- Kept in PostgreSQL so every API process knows every session (sign-in on one, requests and
-- sign-out on any other). Only the SHA-256 of the session token is stored: the cookie's
-- value is never in the database, so reading this table does not let anyone sign in. The
-- CSRF token is derived from the session token, not stored.
--
-- A session lasts while all of these hold: it is younger than its absolute expiry
-- (`expires_at`, SLUICE_CONSOLE_SESSION_MAX_SECONDS after sign-in), it was used within the
-- idle bound (SLUICE_CONSOLE_SESSION_IDLE_SECONDS), and the key it was opened with is still
-- the live key it was then: not revoked, and not rotated since (a rotation gives the old
-- key an expiry, `key_expires_at` remembers the one it had at sign-in). Its scopes are the
-- key's, read on every request, never copied.
--
-- The API's role (0013) may INSERT (sign in), SELECT and DELETE (sign out; expired sessions
-- of the tenant at each sign-in) under row-level security. The one read before the tenant
-- is known, a session by its token hash, is `sluice_console_session`, a SECURITY DEFINER
-- function like `sluice_find_api_key` (0004): it returns at most that one session, and
-- moves its idle clock.
--
-- depends: 0004_row_level_security 0013_least_privilege 0014_key_secret_ids

CREATE TABLE console_sessions (
    token_hash     bytea       PRIMARY KEY,
    tenant         text        NOT NULL,
    key_prefix     text        NOT NULL,
    key_expires_at timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);

CREATE INDEX console_sessions_tenant ON console_sessions (tenant, last_seen_at);

ALTER TABLE console_sessions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON console_sessions
    USING (tenant = current_setting('sluice.tenant', true))
    WITH CHECK (tenant = current_setting('sluice.tenant', true));

GRANT SELECT, INSERT, DELETE ON console_sessions TO sluice_api;

CREATE FUNCTION sluice_console_session(session_hash bytea, idle_seconds double precision)
    RETURNS TABLE (tenant text, key_prefix text, scopes text[])
    LANGUAGE sql VOLATILE SECURITY DEFINER
    AS $$
        UPDATE console_sessions s SET last_seen_at = now()
        FROM api_keys k
        WHERE s.token_hash = session_hash
          AND k.prefix = s.key_prefix AND k.tenant = s.tenant
          AND s.expires_at > now()
          AND s.last_seen_at > now() - make_interval(secs => idle_seconds)
          AND k.revoked_at IS NULL
          AND k.expires_at IS NOT DISTINCT FROM s.key_expires_at
          AND (k.expires_at IS NULL OR k.expires_at > now())
        RETURNING s.tenant, s.key_prefix, k.scopes
    $$;

DO $$
BEGIN
    -- A SECURITY DEFINER function must not resolve names through a schema others can write.
    EXECUTE format(
        'ALTER FUNCTION sluice_console_session(bytea, double precision) SET search_path = %I, pg_temp',
        current_schema());
END
$$;

REVOKE ALL ON FUNCTION sluice_console_session(bytea, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sluice_console_session(bytea, double precision) TO sluice_api;
