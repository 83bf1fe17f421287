-- The first answer to each POST sent with an Idempotency-Key, kept per tenant for 24 hours, so a
-- double click or a client's retry after a timeout gets that answer again instead of a second
-- connection (and a second set of hooks in the tenant's GitLab).
--
-- The row is written in the same transaction as the work it answers: a concurrent request with
-- the same key waits on the primary key until that transaction ends, then replays its answer
-- (or, if it rolled back, does the work itself). Only successful answers are kept.
CREATE TABLE idempotency_keys (
    tenant_id      text NOT NULL,
    key            text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    -- SHA-256 of the method, route and body: the same key on another request is refused.
    request_hash   bytea NOT NULL,
    -- The connection the answer is about, so deleting the connection deletes its answers.
    connection_id  uuid,
    status         smallint,
    body           jsonb,
    location       text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (tenant_id, created_at);

ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON idempotency_keys
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO gitlab_connector_app, gitlab_connector_api;
