-- Bucket imports (issue 11): where a tenant imports from, each run of an import, the manifest
-- of what the source held when it was listed, each object's progress, and the deletion
-- manifests `import mark-source` records. Everything an import knows lives here, so any node
-- can resume it. Portable to CockroachDB: no triggers, no LISTEN/NOTIFY, no advisory locks.

-- A source bucket and its credentials, sealed in the browser or the CLI under a passphrase the
-- server never stores (docs/import.md): the server cannot open `sealed` by itself.
CREATE TABLE import_sources (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       BIGINT NOT NULL REFERENCES tenants (id),
    name            TEXT NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    endpoint        TEXT NOT NULL CHECK (endpoint ~ '^https?://'),
    region          TEXT NOT NULL DEFAULT 'us-east-1',
    bucket          TEXT NOT NULL CHECK (bucket <> ''),
    prefix          TEXT NOT NULL DEFAULT '',
    sealed          TEXT NOT NULL CHECK (length(sealed) <= 16384),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);

-- One run of an import: source -> destination bucket and prefix, written with the class,
-- region lock and recipients (the tenant's published keys the objects are encrypted to:
-- [{"key_id": ..., "key_version": n}]) fixed when it was created, so a resumed run writes
-- exactly as the first attempt did. The counters are kept by the same statements that move
-- objects between states (schema/imports.py), so they always equal what the rows say:
-- objects_done/bytes_done count verified and skipped objects, errors the failed ones.
-- submission_id: the Ray job submission id of the driver now in charge (deterministic per
-- run and attempt, so resubmitting is safe).
CREATE TABLE import_runs (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       BIGINT NOT NULL REFERENCES tenants (id),
    source_id       BIGINT NOT NULL REFERENCES import_sources (id),
    dest_bucket     TEXT NOT NULL CHECK (dest_bucket <> ''),
    dest_prefix     TEXT NOT NULL DEFAULT '',
    redundancy_class TEXT,
    region_lock     TEXT[] NOT NULL DEFAULT '{}',
    recipients      JSONB NOT NULL DEFAULT '[]',
    state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN
                    ('pending', 'listing', 'running', 'verifying', 'done', 'failed', 'cancelled')),
    objects_total   BIGINT NOT NULL DEFAULT 0 CHECK (objects_total >= 0),
    objects_done    BIGINT NOT NULL DEFAULT 0 CHECK (objects_done >= 0),
    bytes_total     BIGINT NOT NULL DEFAULT 0 CHECK (bytes_total >= 0),
    bytes_done      BIGINT NOT NULL DEFAULT 0 CHECK (bytes_done >= 0),
    errors          BIGINT NOT NULL DEFAULT 0 CHECK (errors >= 0),
    manifest_complete BOOLEAN NOT NULL DEFAULT FALSE,
    submission_id   TEXT UNIQUE,
    source_marked_at TIMESTAMPTZ,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at      TIMESTAMPTZ,
    finished_at     TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX import_runs_tenant ON import_runs (tenant_id, id DESC);
-- Previous runs of the same source -> destination (a re-run copies only what changed).
CREATE INDEX import_runs_route ON import_runs (source_id, dest_bucket, dest_prefix, id);

-- The manifest: the source listing as it was read, one Parquet segment per listing page
-- (key, size, etag, last_modified, checksum), stored with that page's import_objects rows in
-- one transaction. Segments are numbered from 0; a lister that restarts continues after the
-- last key of the last segment, so there are no gaps and no duplicates.
CREATE TABLE import_manifest_segments (
    run_id          BIGINT NOT NULL REFERENCES import_runs (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL CHECK (seq >= 0),
    parquet         BYTEA NOT NULL,
    keys            INTEGER NOT NULL CHECK (keys > 0),
    bytes           BIGINT NOT NULL CHECK (bytes >= 0),
    first_key       TEXT COLLATE "C" NOT NULL,
    last_key        TEXT COLLATE "C" NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq),
    CHECK (first_key <= last_key)
);

-- One row per source object of a run (the source key; core/import_state.destination_key maps
-- it). state: pending -> copied -> verified, or failed (given up; `error` says why), or
-- skipped (identical to an object a previous run of the same route verified and that is
-- still the latest version at the destination). `error` also holds the last retried error of
-- an object still pending. version_pk: the version this run wrote (or, when skipped, the one
-- the previous run wrote); NULL again if that version is deleted.
CREATE TABLE import_objects (
    run_id          BIGINT NOT NULL REFERENCES import_runs (id) ON DELETE CASCADE,
    key             TEXT COLLATE "C" NOT NULL,
    size            BIGINT NOT NULL CHECK (size >= 0),
    etag            TEXT NOT NULL,
    last_modified   TIMESTAMPTZ,
    checksum        TEXT CHECK (checksum IS NULL OR checksum ~ '^[A-Z0-9]+:'),
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'copied', 'verified', 'failed', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    error           TEXT,
    version_pk      BIGINT REFERENCES object_versions (id) ON DELETE SET NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, key)
);
-- The transfer enqueuer walks pending objects in key order; status counts by state.
CREATE INDEX import_objects_state ON import_objects (run_id, state, key);
-- Deleting a version sets the reference NULL; status joins replicas by version.
CREATE INDEX import_objects_version ON import_objects (version_pk) WHERE version_pk IS NOT NULL;

-- `import mark-source`: the source keys (with the ETag and size that were verified) a tenant
-- may delete at the source because the import holds them. Recorded, never acted on: we never
-- delete at the source. Rows are only added.
CREATE TABLE import_deletion_manifest (
    run_id          BIGINT NOT NULL REFERENCES import_runs (id) ON DELETE CASCADE,
    key             TEXT COLLATE "C" NOT NULL,
    size            BIGINT NOT NULL,
    etag            TEXT NOT NULL,
    version_pk      BIGINT,
    marked_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, key)
);
