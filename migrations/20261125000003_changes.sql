-- The per-tenant change feed: every insert, update and delete of synced data, so Coworker can
-- follow changes incrementally. Rows are written by triggers in the same transaction as the
-- change. `seq` orders them; `xid` lets a reader hold back rows of transactions that may still
-- commit behind an already visible row (see the read query), so the feed is gap-free in commit
-- order.
CREATE TABLE changes (
    tenant_id      text NOT NULL,
    seq            bigint GENERATED ALWAYS AS IDENTITY,
    xid            xid8 NOT NULL DEFAULT pg_current_xact_id(),
    connection_id  uuid NOT NULL,
    -- project, commit, merge_request, issue, note, pipeline, connection
    entity         text NOT NULL,
    -- insert, update, delete
    op             text NOT NULL,
    -- GitLab's identity of the object within the connection, e.g. {"project_id": 7, "iid": 3}.
    key            jsonb NOT NULL,
    changed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX changes_xid ON changes (tenant_id, xid);

ALTER TABLE changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE changes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON changes
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, DELETE ON changes TO gitlab_connector_app;

-- TG_ARGV[0] is the entity name, the rest the key columns. An update that changes nothing but
-- the sync time (a delivery or page applied twice) is not a change. Deleting a connection
-- sets app.suppress_changes for its transaction and records one `connection` delete instead
-- of one per row.
CREATE FUNCTION record_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    row_data jsonb;
    key jsonb;
BEGIN
    IF current_setting('app.suppress_changes', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND (to_jsonb(OLD) - 'synced_at') = (to_jsonb(NEW) - 'synced_at') THEN
        RETURN NULL;
    END IF;
    row_data := CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END;
    SELECT jsonb_object_agg(k, row_data -> k) INTO key FROM unnest(TG_ARGV[1:]) AS k;
    INSERT INTO changes (tenant_id, connection_id, entity, op, key)
    VALUES (row_data ->> 'tenant_id', (row_data ->> 'connection_id')::uuid, TG_ARGV[0], lower(TG_OP), key);
    RETURN NULL;
END
$$;

CREATE TRIGGER projects_changes AFTER INSERT OR UPDATE OR DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION record_change('project', 'gitlab_id');
CREATE TRIGGER commits_changes AFTER INSERT OR UPDATE OR DELETE ON commits
    FOR EACH ROW EXECUTE FUNCTION record_change('commit', 'project_id', 'sha');
CREATE TRIGGER merge_requests_changes AFTER INSERT OR UPDATE OR DELETE ON merge_requests
    FOR EACH ROW EXECUTE FUNCTION record_change('merge_request', 'project_id', 'iid');
CREATE TRIGGER issues_changes AFTER INSERT OR UPDATE OR DELETE ON issues
    FOR EACH ROW EXECUTE FUNCTION record_change('issue', 'project_id', 'iid');
CREATE TRIGGER notes_changes AFTER INSERT OR UPDATE OR DELETE ON notes
    FOR EACH ROW EXECUTE FUNCTION record_change('note', 'project_id', 'gitlab_id');
CREATE TRIGGER pipelines_changes AFTER INSERT OR UPDATE OR DELETE ON pipelines
    FOR EACH ROW EXECUTE FUNCTION record_change('pipeline', 'project_id', 'gitlab_id');
