-- What the user set on a connection (its token, groups, projects, start date) has a revision,
-- raised by each change the API makes: the connection's ETag, so that a PATCH or DELETE sent with
-- If-Match of an older revision is refused instead of overwriting another admin's edit. The
-- worker moving the connection along (status, progress) leaves it as it is.
ALTER TABLE gitlab_connections ADD COLUMN revision bigint NOT NULL DEFAULT 1 CHECK (revision > 0);
