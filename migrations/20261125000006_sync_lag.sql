-- The metrics report each live connection's sync lag (time since its last finished sync): the
-- system role may read that column too.
GRANT SELECT (last_synced_at) ON gitlab_connections TO gitlab_connector_system;
