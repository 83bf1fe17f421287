-- Complete history: commits are found from the repository's branch heads rather than from commit
-- dates, deletions are reconciled by id, and records PostgreSQL cannot hold as they are are kept
-- aside with their original bytes.

-- The branch heads each project had when its commits were last read completely. A catch-up lists
-- the branches again and reads `old..new` for each head that moved (whatever the commits' dates
-- say), the default branch's known head `..new` for a new branch, and re-lists the project when a
-- branch was rewritten or deleted.
CREATE TABLE branch_heads (
    tenant_id      text NOT NULL,
    connection_id  uuid NOT NULL,
    project_id     bigint NOT NULL,
    name           text NOT NULL,
    sha            text NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, connection_id, project_id, name),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES gitlab_connections (tenant_id, id) ON DELETE CASCADE
);

-- When a stream's ids were last compared with GitLab's (deletions GitLab sends nothing for).
ALTER TABLE sync_checkpoints ADD COLUMN reconciled_at timestamptz;

-- A record whose text PostgreSQL cannot store as it is (U+0000 in a commit message, a title, a
-- note): it is stored with U+FFFD in place of each NUL, and its original JSON is kept here, byte
-- for byte, with the reason.
CREATE TABLE kept_aside_records (
    tenant_id      text NOT NULL,
    connection_id  uuid NOT NULL,
    id             bigint GENERATED ALWAYS AS IDENTITY,
    project_id     bigint,
    resource       text NOT NULL,
    object_key     text NOT NULL,
    reason         text NOT NULL,
    original       bytea NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, connection_id, resource, object_key),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES gitlab_connections (tenant_id, id) ON DELETE CASCADE
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['branch_heads', 'kept_aside_records']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = app_current_tenant())'
                       ' WITH CHECK (tenant_id = app_current_tenant())', t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON branch_heads, kept_aside_records TO gitlab_connector_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO gitlab_connector_app;
