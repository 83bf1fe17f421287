-- A connection's status tells the truth: every state either has a job moving it along or is
-- final and explains itself, and a live connection that is not keeping up says why and since when.

-- When each hook's status last changed (a catch-up re-checks it every time; that is no change),
-- and deliveries to it that failed verification, until one passes again.
ALTER TABLE webhook_hooks
    ADD COLUMN status_since     timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN refused_since    timestamptz,
    ADD COLUMN last_refused_at  timestamptz,
    ADD COLUMN last_refusal     text;

-- A backfill or catch-up whose attempts fail, from the first failure until one succeeds.
ALTER TABLE gitlab_connections
    ADD COLUMN sync_failing_since  timestamptz,
    ADD COLUMN sync_failure        text;

-- Every final state says what happened and what to do.
UPDATE gitlab_connections
SET status_message = 'stopped without a recorded reason: resync the connection to try again'
WHERE status IN ('needs_reauth', 'invalid', 'failed') AND status_message IS NULL;
ALTER TABLE gitlab_connections ADD CONSTRAINT gitlab_connections_final_states_explained
    CHECK (status NOT IN ('needs_reauth', 'invalid', 'failed') OR status_message IS NOT NULL);

-- The scheduler finds connections in a moving state that have no job (one lost by a crash
-- between queue and dead letter, or removed by hand) from these columns.
GRANT SELECT (updated_at) ON gitlab_connections TO gitlab_connector_system;
