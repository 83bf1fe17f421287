-- Foundation schema: tenants, GitLab connections, and the synced GitLab data.
--
-- Tenant isolation is enforced twice: every repository function takes the tenant, and row-level
-- security on every tenant table hides rows of any tenant other than the one set for the current
-- transaction with set_config('app.tenant_id', <tenant>, true). A query that forgot the tenant
-- sees nothing.
--
-- Roles. Migrations run as the schema owner (DATABASE_URL). The service connects as
-- gitlab_connector_app: no superuser, no BYPASSRLS, not the owner, so RLS always applies to it.
-- The few deliberate cross-tenant operations (key rotation, routing a webhook to its tenant,
-- the periodic scheduler) run inside a transaction that does SET LOCAL ROLE
-- gitlab_connector_system, whose own narrow policies allow them; the app role is NOINHERIT, so
-- it has none of that role's rights until it asks for them explicitly.
--
-- Roles are cluster-wide while this migration runs once per database (and tests migrate many
-- databases at once), so creation tolerates a concurrent twin.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gitlab_connector_system') THEN
        BEGIN
            CREATE ROLE gitlab_connector_system NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gitlab_connector_app') THEN
        BEGIN
            CREATE ROLE gitlab_connector_app LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    IF NOT pg_has_role('gitlab_connector_app', 'gitlab_connector_system', 'MEMBER') THEN
        BEGIN
            GRANT gitlab_connector_system TO gitlab_connector_app;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
END
$$;

-- The tenant currently set for this transaction, or NULL. set_config(..., true) reverts to the
-- empty string (not NULL) after the transaction, hence NULLIF.
CREATE FUNCTION app_current_tenant() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '') $$;

CREATE TABLE tenants (
    id                 text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$'),
    -- The tenant's data key, wrapped by master key `data_key_version`.
    data_key_wrapped   bytea NOT NULL,
    data_key_version   integer NOT NULL CHECK (data_key_version > 0),
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gitlab_connections (
    tenant_id          text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                 uuid NOT NULL,
    gitlab_url         text NOT NULL,
    groups_list        bigint[] NOT NULL CHECK (cardinality(groups_list) > 0),
    -- Numeric ids or full paths as the user gave them; empty means every project in the groups.
    projects_list      text[] NOT NULL DEFAULT '{}',
    start_date         timestamptz NOT NULL,
    token_ciphertext   bytea NOT NULL,
    token_hint         text NOT NULL,
    status             text NOT NULL DEFAULT 'pending' CHECK (status IN (
                           'pending', 'validating', 'installing_hooks', 'backfilling', 'live',
                           'needs_reauth', 'invalid', 'failed', 'deleting')),
    status_message     text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (id)
);
CREATE INDEX gitlab_connections_tenant_created ON gitlab_connections (tenant_id, created_at, id);

-- Synced GitLab objects. Keys are GitLab's own ids within one connection (which names the
-- instance), so backfill pages and webhook events upsert the same rows. `gitlab_updated_at`
-- lets an older event lose against newer stored state.
CREATE TABLE projects (
    tenant_id           text NOT NULL,
    connection_id       uuid NOT NULL,
    gitlab_id           bigint NOT NULL,
    path_with_namespace text NOT NULL,
    name                text NOT NULL,
    namespace_id        bigint,
    default_branch      text,
    visibility          text,
    web_url             text,
    archived            boolean NOT NULL DEFAULT false,
    created_at          timestamptz,
    last_activity_at    timestamptz,
    raw                 jsonb NOT NULL DEFAULT '{}',
    synced_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    PRIMARY KEY (tenant_id, connection_id, gitlab_id),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES gitlab_connections (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE commits (
    tenant_id        text NOT NULL,
    connection_id    uuid NOT NULL,
    project_id       bigint NOT NULL,
    sha              text NOT NULL,
    title            text NOT NULL DEFAULT '',
    message          text NOT NULL DEFAULT '',
    author_name      text,
    author_email     text,
    authored_at      timestamptz,
    committer_name   text,
    committer_email  text,
    committed_at     timestamptz,
    parent_ids       text[] NOT NULL DEFAULT '{}',
    web_url          text,
    raw              jsonb NOT NULL DEFAULT '{}',
    synced_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, connection_id, project_id, sha),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES gitlab_connections (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX commits_tenant_committed ON commits (tenant_id, connection_id, committed_at);

CREATE TABLE merge_requests (
    tenant_id          text NOT NULL,
    connection_id      uuid NOT NULL,
    project_id         bigint NOT NULL,
    iid                bigint NOT NULL,
    gitlab_id          bigint NOT NULL,
    title              text NOT NULL,
    description        text,
    state              text NOT NULL,
    author_id          bigint,
    author_username    text,
    source_branch      text,
    target_branch      text,
    sha                text,
    merge_commit_sha   text,
    web_url            text,
    created_at         timestamptz,
    gitlab_updated_at  timestamptz NOT NULL,
    merged_at          timestamptz,
    closed_at          timestamptz,
    raw                jsonb NOT NULL DEFAULT '{}',
    synced_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, connection_id, project_id, iid),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES gitlab_connections (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX merge_requests_tenant_updated ON merge_requests (tenant_id, connection_id, gitlab_updated_at);

CREATE TABLE merge_request_commits (
    tenant_id      text NOT NULL,
    connection_id  uuid NOT NULL,
    project_id     bigint NOT NULL,
    mr_iid         bigint NOT NULL,
    sha            text NOT NULL,
    PRIMARY KEY (tenant_id, connection_id, project_id, mr_iid, sha),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES gitlab_connections (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE issues (
    tenant_id          text NOT NULL,
    connection_id      uuid NOT NULL,
    project_id         bigint NOT NULL,
    iid                bigint NOT NULL,
    gitlab_id          bigint NOT NULL,
    issue_type         text NOT NULL DEFAULT 'issue',
    title              text NOT NULL,
    description        text,
    state              text NOT NULL,
    author_id          bigint,
    author_username    text,
    labels             text[] NOT NULL DEFAULT '{}',
    confidential       boolean NOT NULL DEFAULT false,
    web_url            text,
    created_at         timestamptz,
    gitlab_updated_at  timestamptz NOT NULL,
    closed_at          timestamptz,
    raw                jsonb NOT NULL DEFAULT '{}',
    synced_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, connection_id, project_id, iid),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES gitlab_connections (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX issues_tenant_updated ON issues (tenant_id, connection_id, gitlab_updated_at);

CREATE TABLE notes (
    tenant_id          text NOT NULL,
    connection_id      uuid NOT NULL,
    project_id         bigint NOT NULL,
    gitlab_id          bigint NOT NULL,
    -- Commit, MergeRequest, Issue or Snippet; the parent is named by iid, or sha for commits.
    noteable_type      text NOT NULL,
    noteable_iid       bigint,
    commit_sha         text,
    body               text NOT NULL,
    author_id          bigint,
    author_username    text,
    system             boolean NOT NULL DEFAULT false,
    created_at         timestamptz,
    gitlab_updated_at  timestamptz NOT NULL,
    raw                jsonb NOT NULL DEFAULT '{}',
    synced_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, connection_id, project_id, gitlab_id),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES gitlab_connections (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX notes_tenant_parent ON notes (tenant_id, connection_id, project_id, noteable_type, noteable_iid);

CREATE TABLE pipelines (
    tenant_id          text NOT NULL,
    connection_id      uuid NOT NULL,
    project_id         bigint NOT NULL,
    gitlab_id          bigint NOT NULL,
    iid                bigint,
    status             text NOT NULL,
    source             text,
    ref                text,
    sha                text,
    web_url            text,
    created_at         timestamptz,
    gitlab_updated_at  timestamptz NOT NULL,
    finished_at        timestamptz,
    duration_seconds   double precision,
    raw                jsonb NOT NULL DEFAULT '{}',
    synced_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, connection_id, project_id, gitlab_id),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES gitlab_connections (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX pipelines_tenant_updated ON pipelines (tenant_id, connection_id, gitlab_updated_at);

-- Hooks we installed in GitLab. `id` is the endpoint id in our webhook URL
-- (/webhooks/gitlab/{id}); it names this row, which names the connection and the tenant.
CREATE TABLE webhook_hooks (
    tenant_id            text NOT NULL,
    connection_id        uuid NOT NULL,
    id                   uuid NOT NULL,
    scope                text NOT NULL CHECK (scope IN ('group', 'project')),
    gitlab_target_id     bigint NOT NULL,
    gitlab_hook_id       bigint,
    secret_ciphertext    bytea NOT NULL,
    signing_ciphertext   bytea,
    status               text NOT NULL DEFAULT 'pending',
    status_message       text,
    last_delivery_at     timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (id),
    UNIQUE (tenant_id, connection_id, scope, gitlab_target_id),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES gitlab_connections (tenant_id, id) ON DELETE CASCADE
);

-- The durable inbox: each verified delivery, stored before GitLab gets its 2xx.
CREATE TABLE webhook_deliveries (
    tenant_id        text NOT NULL,
    id               bigint GENERATED ALWAYS AS IDENTITY,
    connection_id    uuid NOT NULL,
    hook_id          uuid NOT NULL,
    dedup_key        text NOT NULL,
    event            text,
    headers          jsonb NOT NULL DEFAULT '{}',
    body             bytea NOT NULL,
    status           text NOT NULL DEFAULT 'received' CHECK (status IN (
                         'received', 'applied', 'kept_aside', 'out_of_scope', 'failed')),
    reason           text,
    attempts         integer NOT NULL DEFAULT 0,
    received_at      timestamptz NOT NULL DEFAULT now(),
    processed_at     timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, hook_id, dedup_key),
    FOREIGN KEY (tenant_id, hook_id) REFERENCES webhook_hooks (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX webhook_deliveries_tenant_status ON webhook_deliveries (tenant_id, status, received_at);

-- Where each backfill or catch-up stream stands, written in the same transaction as the page it
-- follows, so a killed worker resumes exactly there.
CREATE TABLE sync_checkpoints (
    tenant_id        text NOT NULL,
    connection_id    uuid NOT NULL,
    project_id       bigint NOT NULL,
    resource         text NOT NULL,
    cursor           jsonb,
    high_water_mark  timestamptz,
    records          bigint NOT NULL DEFAULT 0,
    done             boolean NOT NULL DEFAULT false,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, connection_id, project_id, resource),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES gitlab_connections (tenant_id, id) ON DELETE CASCADE
);

-- Row-level security on every tenant table, forced so that even the owner is subject to it.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['gitlab_connections', 'projects', 'commits', 'merge_requests',
                             'merge_request_commits', 'issues', 'notes', 'pipelines',
                             'webhook_hooks', 'webhook_deliveries', 'sync_checkpoints']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = app_current_tenant())'
                       ' WITH CHECK (tenant_id = app_current_tenant())', t);
    END LOOP;
END
$$;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = app_current_tenant()) WITH CHECK (id = app_current_tenant());
-- Key rotation walks every tenant's wrapped data key: the system role may read and re-wrap them,
-- and nothing else.
CREATE POLICY system_key_rotation ON tenants TO gitlab_connector_system USING (true) WITH CHECK (true);

GRANT USAGE ON SCHEMA public TO gitlab_connector_app, gitlab_connector_system;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO gitlab_connector_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO gitlab_connector_app;
GRANT SELECT, UPDATE (data_key_wrapped, data_key_version) ON tenants TO gitlab_connector_system;
-- The migration history is the owner's alone.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON _sqlx_migrations FROM gitlab_connector_app;
