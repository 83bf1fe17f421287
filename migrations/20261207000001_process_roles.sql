-- A login role per process kind, and no role that may take the cross-tenant one.
--
-- Until now the one service role, gitlab_connector_app, could SET ROLE gitlab_connector_system
-- and read every tenant's id, every hook's routing and every wrapped data key; the queue's jobs
-- and the shared rate budgets had no row-level security at all. The API and ingest pods face
-- the internet, so theirs is the credential most likely to leak.
--
-- Now:
-- - gitlab_connector_system keeps its narrow column grants and policies but has no member. Its
--   rights are reachable only through the SECURITY DEFINER functions below, each one
--   cross-tenant operation, owned by it and executable only by the roles named for it.
-- - gitlab_connector_api (new, LOGIN) is what the API and ingest pods log in as: the tenant
--   tables as gitlab_connector_app has them (row-level security still shows one tenant at a
--   time), the queue's jobs only of the tenant its transaction sets, no rate budgets, and of the
--   cross-tenant functions only routing one webhook endpoint, finding due deliveries, the key
--   versions in use and the anonymous figures /metrics shows.
-- - gitlab_connector_app stays the worker's role (and the operator commands', and a single
--   process running every role): it also runs the scheduler's and key rotation's functions and
--   reads the whole queue, which fetching jobs needs.
--
-- Later migrations grant a new table to both login roles (a store test compares them).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gitlab_connector_api') THEN
        BEGIN
            CREATE ROLE gitlab_connector_api LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    IF pg_has_role('gitlab_connector_app', 'gitlab_connector_system', 'MEMBER') THEN
        BEGIN
            REVOKE gitlab_connector_system FROM gitlab_connector_app;
        EXCEPTION WHEN undefined_object THEN NULL;
        END;
    END IF;
    -- Giving a function to the system role needs membership in it; the owner running this may
    -- not be a superuser (it has CREATEROLE, as the first migration needed).
    IF NOT pg_has_role(current_user, 'gitlab_connector_system', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT gitlab_connector_system TO %I', current_user);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
END
$$;

-- The API role gets the app role's privileges on our tables, sequences and functions (as they
-- stand: copied, not inherited, so the API role can never SET ROLE to the app role), but
-- nothing of the rate budgets.
GRANT USAGE ON SCHEMA public, apalis TO gitlab_connector_api;
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.relkind, c.relname, a.privilege_type
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
        CROSS JOIN LATERAL aclexplode(c.relacl) a
        WHERE a.grantee = 'gitlab_connector_app'::regrole AND c.relname <> 'gitlab_rate_budgets'
    LOOP
        EXECUTE format('GRANT %s ON %s public.%I TO gitlab_connector_api',
                       r.privilege_type, CASE WHEN r.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, r.relname);
    END LOOP;
END
$$;
-- The queue: enqueuing (whose trigger counts the tenant's waiting jobs) and deleting a
-- deleted connection's jobs; apalis' own functions and worker tables are the worker's.
GRANT SELECT, INSERT, DELETE ON apalis.jobs TO gitlab_connector_api;

-- The queue's jobs of one tenant at a time for the API role, every job for the worker.
ALTER TABLE apalis.jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY api_own_tenant ON apalis.jobs TO gitlab_connector_api
    USING (tenant = app_current_tenant()) WITH CHECK (tenant = app_current_tenant());
CREATE POLICY worker_fetches_all ON apalis.jobs TO gitlab_connector_app USING (true) WITH CHECK (true);
CREATE POLICY system_queue_states ON apalis.jobs FOR SELECT TO gitlab_connector_system USING (true);
GRANT USAGE ON SCHEMA apalis TO gitlab_connector_system;
GRANT SELECT (job_type, status, run_at) ON apalis.jobs TO gitlab_connector_system;
GRANT SELECT (budget_key), DELETE ON gitlab_rate_budgets TO gitlab_connector_system;

-- The cross-tenant operations. Each runs as the system role, with a fixed search_path so a
-- caller's objects cannot stand in for ours.

-- Routing one delivery: the endpoint id in the URL (a random UUID) to its tenant and connection.
CREATE FUNCTION system_route_endpoint(endpoint uuid) RETURNS TABLE (tenant_id text, connection_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$ SELECT h.tenant_id, h.connection_id FROM webhook_hooks h WHERE h.id = endpoint $$;

-- Received deliveries due for processing, oldest first.
CREATE FUNCTION system_due_deliveries(max_rows bigint) RETURNS TABLE (tenant_id text, id bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        SELECT d.tenant_id, d.id FROM webhook_deliveries d
        WHERE d.status = 'received' AND d.next_attempt_at <= now()
        ORDER BY d.next_attempt_at, d.id LIMIT max_rows
    $$;

-- The master key versions tenants' data keys are wrapped under, which every pod's ring must hold.
CREATE FUNCTION system_data_key_versions() RETURNS SETOF integer
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$ SELECT DISTINCT data_key_version FROM tenants ORDER BY 1 $$;

-- /metrics: live connections and how overdue the most overdue catch-up is, naming no one.
CREATE FUNCTION system_liveness(OUT live bigint, OUT overdue_seconds double precision)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        SELECT count(*),
               coalesce(extract(epoch FROM now() - min(next_catch_up_at) FILTER (WHERE next_catch_up_at < now())), 0)::float8
        FROM gitlab_connections WHERE status = 'live'
    $$;

-- /metrics: each live connection's sync lag in seconds, without saying whose.
CREATE FUNCTION system_sync_lags() RETURNS SETOF double precision
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        SELECT greatest(extract(epoch FROM now() - last_synced_at), 0)::float8
        FROM gitlab_connections WHERE status = 'live' AND last_synced_at IS NOT NULL
    $$;

-- /metrics: each queue's waiting jobs and how long the oldest due one has waited ('Queued' jobs
-- are fetched by a worker but not started: still waiting).
CREATE FUNCTION system_queue_states(queues text[])
    RETURNS TABLE (queue text, waiting bigint, oldest_seconds double precision)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        SELECT q.name, count(j.job_type),
               coalesce(extract(epoch FROM now() - min(j.run_at) FILTER (WHERE j.run_at <= now())), 0)::float8
        FROM unnest(queues) AS q(name)
        LEFT JOIN apalis.jobs j ON j.job_type = q.name AND j.status IN ('Pending', 'Queued')
        GROUP BY q.name
    $$;

-- Deleting a connection drops its rate budget; only a connection of the caller's tenant.
CREATE FUNCTION system_forget_connection_budget(connection uuid) RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        DELETE FROM gitlab_rate_budgets
        WHERE budget_key LIKE '%#connection:' || connection::text
          AND EXISTS (SELECT 1 FROM gitlab_connections c WHERE c.id = connection AND c.tenant_id = app_current_tenant())
    $$;

-- The scheduler: connections due for a periodic job of `kind`.
CREATE FUNCTION system_connections_due(kind text) RETURNS TABLE (tenant_id text, id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        SELECT c.tenant_id, c.id FROM gitlab_connections c
        WHERE CASE kind
                WHEN 'catch_up' THEN c.status = 'live' AND c.next_catch_up_at <= now()
                WHEN 'token_health' THEN c.status IN ('live', 'backfilling', 'installing_hooks')
              END
        ORDER BY c.next_catch_up_at NULLS FIRST
    $$;

-- The scheduler: connections in one of `moving` states, unchanged for `quiet_seconds`.
CREATE FUNCTION system_quiet_connections(moving text[], quiet_seconds double precision)
    RETURNS TABLE (tenant_id text, id uuid, status text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        SELECT c.tenant_id, c.id, c.status FROM gitlab_connections c
        WHERE c.status = ANY(moving) AND c.updated_at < now() - make_interval(secs => quiet_seconds)
    $$;

-- Key rotation: a batch of data keys not yet under `newest`, locked until the caller commits.
CREATE FUNCTION system_keys_to_rewrap(newest integer, max_rows bigint)
    RETURNS TABLE (tenant_id text, wrapped bytea, version integer)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        SELECT t.id, t.data_key_wrapped, t.data_key_version FROM tenants t
        WHERE t.data_key_version <> newest ORDER BY t.id LIMIT max_rows FOR UPDATE
    $$;

CREATE FUNCTION system_rewrap_key(tenant text, wrapped bytea, version integer) RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$ UPDATE tenants SET data_key_wrapped = wrapped, data_key_version = version WHERE id = tenant $$;

CREATE FUNCTION system_tenants_under(version integer) RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$ SELECT count(*) FROM tenants WHERE data_key_version = version $$;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'system_route_endpoint(uuid)', 'system_due_deliveries(bigint)', 'system_data_key_versions()',
        'system_liveness()', 'system_sync_lags()', 'system_queue_states(text[])',
        'system_forget_connection_budget(uuid)', 'system_connections_due(text)',
        'system_quiet_connections(text[], double precision)', 'system_keys_to_rewrap(integer, bigint)',
        'system_rewrap_key(text, bytea, integer)', 'system_tenants_under(integer)']
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO gitlab_connector_system', f);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO gitlab_connector_app', f);
    END LOOP;
    FOREACH f IN ARRAY ARRAY[
        'system_route_endpoint(uuid)', 'system_due_deliveries(bigint)', 'system_data_key_versions()',
        'system_liveness()', 'system_sync_lags()', 'system_queue_states(text[])',
        'system_forget_connection_budget(uuid)']
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO gitlab_connector_api', f);
    END LOOP;
END
$$;
