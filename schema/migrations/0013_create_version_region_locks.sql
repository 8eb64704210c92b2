-- Issue 11 follow-ups: a region lock bound to stored object versions for their whole life, and
-- what `import verify` found wrong with each imported object.

-- A region lock recorded with one stored version (an import run's --region-lock). Whatever
-- moves the version's pieces later (a repair, a move, a drain, the placement checker) adds it
-- to the bucket's and tenant's rules (schema/policies.py `version_constraints`), exactly as the
-- write did: it only narrows. Written in the transaction that commits the version; it goes
-- with the version.
CREATE TABLE version_region_locks (
    version_pk      BIGINT PRIMARY KEY REFERENCES object_versions (id) ON DELETE CASCADE,
    region_lock     TEXT[] NOT NULL CHECK (cardinality(region_lock) > 0),
    origin          TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- `import verify`: the problem the last verification found with an imported object (its
-- source changed or vanished, a stored replica or shard no longer matches its checksum), NULL
-- when it found none. A verification clears the run's findings first; a run with any finding
-- is RED (core/import_state.py).
ALTER TABLE import_objects ADD COLUMN verify_problem TEXT;
CREATE INDEX import_objects_verify_problem ON import_objects (run_id, key)
    WHERE verify_problem IS NOT NULL;
