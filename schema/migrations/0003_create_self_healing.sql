-- Self-healing: the queue's housekeeping columns and indexes, the workers' state (cursors and
-- run leases), orphan sightings for the vacuumer, and metadata snapshots.
-- Portable to CockroachDB: no LISTEN/NOTIFY, no advisory locks, no triggers; every lease is a
-- row with an owner and an expiry, taken with a conditional UPDATE.

-- When a job reached 'done' or 'dead' (the vacuumer purges old finished jobs by it).
ALTER TABLE jobs ADD COLUMN finished_at TIMESTAMPTZ;
-- Leases that may have expired, found without scanning the queue.
CREATE INDEX jobs_lease_expiry ON jobs (lease_expires_at) WHERE status = 'leased';
-- "Is there an active job for this version?" (repairer, placement checker, version drops).
CREATE INDEX jobs_active_version ON jobs (((payload->>'version_pk')::bigint))
    WHERE status IN ('queued', 'leased');
-- The last outcome of a key, active or not (dead-letter cool-down of the repairer).
CREATE INDEX jobs_key ON jobs (idempotency_key, updated_at);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE status IN ('done', 'dead');

-- Replicas the repairer must look at, and the scrubber's "least recently verified first".
CREATE INDEX replicas_not_ok ON replicas (status, version_pk) WHERE status IN ('pending', 'corrupt', 'missing');
CREATE INDEX replicas_scrub_order ON replicas (verified_at, id) WHERE status = 'ok';
-- Backend object -> replica row (vacuumer and listing audits; garbage safety net).
CREATE INDEX replicas_locator ON replicas (backend_id, locator);

-- One row per periodic worker: its changelog cursor and other progress, and the run lease that
-- keeps two schedulers (or a scheduler and an operator's `worker run`) from running it at once.
CREATE TABLE worker_state (
    name            TEXT PRIMARY KEY,
    cursor          BIGINT NOT NULL DEFAULT 0,
    state           JSONB NOT NULL DEFAULT '{}',
    lease_owner     TEXT,
    lease_expires_at TIMESTAMPTZ,
    last_started_at TIMESTAMPTZ,
    last_finished_at TIMESTAMPTZ,
    last_report     JSONB,
    last_error      TEXT,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Backend objects that no metadata row referenced when the vacuumer listed the backend, and
-- when that was first seen (our clock, not the backend's LastModified: backends are untrusted).
-- A sighting older than the grace period whose object is still unreferenced becomes garbage.
CREATE TABLE orphan_sightings (
    backend_id      BIGINT NOT NULL REFERENCES backends (id),
    locator         TEXT NOT NULL,
    first_seen      TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (backend_id, locator)
);

-- Encrypted metadata snapshots (pg_dump, sealed to the operator's public key) and where their
-- parts are stored. Rows here are references: the vacuumer never deletes these locators.
CREATE TABLE snapshots (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    size            BIGINT NOT NULL,
    sha256          BYTEA NOT NULL,
    part_size       BIGINT NOT NULL,
    part_count      INTEGER NOT NULL,
    key_id          TEXT NOT NULL,
    wrap_alg        TEXT NOT NULL,
    pg_dump_version TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE snapshot_parts (
    snapshot_id     BIGINT NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    backend_id      BIGINT NOT NULL REFERENCES backends (id),
    part_number     INTEGER NOT NULL,
    locator         TEXT NOT NULL,
    size            BIGINT NOT NULL,
    sha256          BYTEA NOT NULL,
    PRIMARY KEY (snapshot_id, backend_id, part_number),
    UNIQUE (backend_id, locator)
);
