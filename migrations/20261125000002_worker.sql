-- What the worker keeps besides the synced data.

ALTER TABLE gitlab_connections
    -- What validation learned: who the token belongs to and how hooks are installed.
    ADD COLUMN gitlab_user_id      bigint,
    ADD COLUMN gitlab_username     text,
    ADD COLUMN token_expires_at    date,
    ADD COLUMN hook_mode           text CHECK (hook_mode IN ('group', 'project', 'mixed')),
    -- Where hooks go: [{"scope": "group"|"project", "id": <GitLab id>}, ...].
    ADD COLUMN hook_targets        jsonb,
    -- The projects validation resolved, as GitLab ids.
    ADD COLUMN resolved_project_ids bigint[],
    ADD COLUMN last_synced_at      timestamptz,
    ADD COLUMN next_catch_up_at    timestamptz;
CREATE INDEX gitlab_connections_catch_up ON gitlab_connections (next_catch_up_at) WHERE status = 'live';

-- Jobs that used up their retries, with the reason the API shows.
CREATE TABLE job_dead_letters (
    tenant_id      text NOT NULL,
    id             bigint GENERATED ALWAYS AS IDENTITY,
    connection_id  uuid NOT NULL,
    job_kind       text NOT NULL,
    job            jsonb NOT NULL,
    attempts       integer NOT NULL,
    reason         text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    retried_at     timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES gitlab_connections (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX job_dead_letters_connection ON job_dead_letters (tenant_id, connection_id, created_at);

-- Things deliberately not synced, and why: e.g. a project whose issues or CI/CD are switched off
-- answers 403 for that resource. Never a failure, never silent.
CREATE TABLE sync_ledger (
    tenant_id      text NOT NULL,
    connection_id  uuid NOT NULL,
    project_id     bigint NOT NULL,
    resource       text NOT NULL,
    reason         text NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, connection_id, project_id, resource),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES gitlab_connections (tenant_id, id) ON DELETE CASCADE
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['job_dead_letters', 'sync_ledger']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = app_current_tenant())'
                       ' WITH CHECK (tenant_id = app_current_tenant())', t);
    END LOOP;
END
$$;

-- Periodic work runs once per period across all replicas: the replica whose insert wins a
-- period does it. Not tenant data.
CREATE TABLE periodic_runs (
    name          text NOT NULL,
    period_start  timestamptz NOT NULL,
    claimed_by    text NOT NULL,
    claimed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, period_start)
);

-- GitLab's rate limit is per user across all our pods: the budget of each token is shared here.
-- Keyed by instance and GitLab token id (never the token itself).
CREATE TABLE gitlab_rate_budgets (
    budget_key     text PRIMARY KEY,
    request_limit  integer,
    remaining      integer NOT NULL,
    reset_at       timestamptz NOT NULL,
    -- The earliest time the next request may start, once pacing has begun: reservations push it
    -- forward, so requests from every pod are spaced out together.
    next_slot      timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- The scheduler finds the connections due for catch-up or a token check across tenants: the
-- system role may read just the columns that needs.
GRANT SELECT (tenant_id, id, status, next_catch_up_at, token_expires_at) ON gitlab_connections TO gitlab_connector_system;
CREATE POLICY system_scheduler ON gitlab_connections FOR SELECT TO gitlab_connector_system USING (true);

GRANT SELECT, INSERT, UPDATE, DELETE ON job_dead_letters, sync_ledger, periodic_runs, gitlab_rate_budgets TO gitlab_connector_app;

-- The job queue (apalis, migrated just before this) lives in schema apalis.
GRANT USAGE ON SCHEMA apalis TO gitlab_connector_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA apalis TO gitlab_connector_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA apalis TO gitlab_connector_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA apalis TO gitlab_connector_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA apalis GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO gitlab_connector_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA apalis GRANT USAGE, SELECT ON SEQUENCES TO gitlab_connector_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA apalis GRANT EXECUTE ON FUNCTIONS TO gitlab_connector_app;

-- Whether GitLab accepted our signing token (19.0+); older versions ignore it.
ALTER TABLE webhook_hooks ADD COLUMN signing_enabled boolean NOT NULL DEFAULT false;
