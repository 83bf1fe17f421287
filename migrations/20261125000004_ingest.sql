-- Webhook ingest.

-- Routing a delivery: the endpoint id in the URL names the hook, the hook names the connection
-- and the tenant. The ingest endpoint learns the tenant this way, as the system role, reading
-- just these columns; everything after runs in the tenant's own transaction.
GRANT SELECT (id, tenant_id, connection_id) ON webhook_hooks TO gitlab_connector_system;
CREATE POLICY system_routing ON webhook_hooks FOR SELECT TO gitlab_connector_system USING (true);

-- The processor finds received deliveries across tenants the same way, then applies each in its
-- tenant's transaction.
ALTER TABLE webhook_deliveries
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (next_attempt_at) WHERE status = 'received';
GRANT SELECT (tenant_id, id, status, next_attempt_at) ON webhook_deliveries TO gitlab_connector_system;
CREATE POLICY system_processing ON webhook_deliveries FOR SELECT TO gitlab_connector_system USING (true);

-- Events that carry no object of the tables above (tags, jobs, releases, deployments, members,
-- subgroups) are kept here as GitLab sent them, and reach the change feed like everything else.
CREATE TABLE gitlab_events (
    tenant_id      text NOT NULL,
    connection_id  uuid NOT NULL,
    -- e.g. tag_push, build, release, deployment, member, subgroup
    kind           text NOT NULL,
    -- The object's identity within its kind, e.g. the tag ref or the job id.
    object_key     text NOT NULL,
    project_id     bigint,
    action         text,
    payload        jsonb NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    synced_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, connection_id, kind, object_key),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES gitlab_connections (tenant_id, id) ON DELETE CASCADE
);
ALTER TABLE gitlab_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE gitlab_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON gitlab_events
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON gitlab_events TO gitlab_connector_app;
CREATE TRIGGER gitlab_events_changes AFTER INSERT OR UPDATE OR DELETE ON gitlab_events
    FOR EACH ROW EXECUTE FUNCTION record_change('event', 'kind', 'object_key', 'project_id', 'action');
