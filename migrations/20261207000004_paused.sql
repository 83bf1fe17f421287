-- A connection the user paused: no job reads GitLab for it until it is resumed; webhooks are
-- still received and applied.
ALTER TABLE gitlab_connections DROP CONSTRAINT gitlab_connections_status_check;
ALTER TABLE gitlab_connections ADD CONSTRAINT gitlab_connections_status_check CHECK (status IN (
    'pending', 'validating', 'installing_hooks', 'backfilling', 'live',
    'needs_reauth', 'invalid', 'failed', 'deleting', 'paused'));
