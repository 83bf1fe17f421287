-- What every pod's MASTER_KEYS must agree on.
--
-- A canary per master key version: a random key wrapped under that version by the first pod
-- that had it. A pod whose key under the same version is different cannot open it and refuses
-- to start, instead of writing data keys the other pods cannot open.
CREATE TABLE master_key_canaries (
    version     integer PRIMARY KEY CHECK (version > 0),
    canary      bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The version new data keys are wrapped under: the newest only once `keys rotate` has seen every
-- live pod hold it, so a pod given a new key first writes nothing the others cannot open.
CREATE TABLE master_key_state (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    wrap_version  integer NOT NULL CHECK (wrap_version > 0),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The serving pods and the versions their rings hold, refreshed every minute and removed on a
-- graceful stop; `keys rotate` reads it.
CREATE TABLE key_ring_pods (
    pod       text PRIMARY KEY,
    versions  integer[] NOT NULL,
    seen_at   timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT ON master_key_canaries TO gitlab_connector_app;
GRANT SELECT, INSERT, UPDATE ON master_key_state TO gitlab_connector_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON key_ring_pods TO gitlab_connector_app;
