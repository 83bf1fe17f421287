-- Opt-in rotation of a connection's token by the connector itself, before it expires.
-- token_rotation_started_at marks a rotation asked of GitLab and not yet stored: while it is
-- set no second rotation of the same token is sent (GitLab would revoke the whole token family).
ALTER TABLE gitlab_connections
    ADD COLUMN rotate_token boolean NOT NULL DEFAULT false,
    ADD COLUMN token_rotation_started_at timestamptz;
