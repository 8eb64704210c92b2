-- Core metadata of Bulletproof. Portable to CockroachDB: no LISTEN/NOTIFY, no advisory locks.
-- Every table the write path touches in one transaction: object_versions, replicas, jobs,
-- changelog, audit_log (+ audit_head, the locked chain head that keeps the chain linear).

CREATE TABLE tenants (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    allow_plaintext BOOLEAN NOT NULL DEFAULT FALSE,
    region_lock     TEXT[] NOT NULL DEFAULT '{}',
    default_class   TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE access_keys (
    access_key_id   TEXT PRIMARY KEY,
    tenant_id       BIGINT NOT NULL REFERENCES tenants (id),
    sealed_secret   BYTEA NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at      TIMESTAMPTZ
);
CREATE INDEX access_keys_tenant ON access_keys (tenant_id);

-- Bucket names are per tenant: one tenant cannot learn that another's bucket name exists.
CREATE TABLE buckets (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       BIGINT NOT NULL REFERENCES tenants (id),
    name            TEXT NOT NULL,
    default_class   TEXT,
    region_lock     TEXT[] NOT NULL DEFAULT '{}',
    versioning      TEXT NOT NULL DEFAULT 'Unversioned'
                    CHECK (versioning IN ('Unversioned', 'Enabled', 'Suspended')),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);

CREATE TABLE backends (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$'),
    kind            TEXT NOT NULL CHECK (kind IN ('s3', 'local')),
    endpoint        TEXT,
    bucket          TEXT,
    path            TEXT,
    sealed_credentials BYTEA,
    region          TEXT NOT NULL,
    country         TEXT NOT NULL,
    jurisdiction    TEXT NOT NULL,
    provider        TEXT NOT NULL DEFAULT 'generic',
    state           TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining', 'removed')),
    healthy         BOOLEAN NOT NULL DEFAULT TRUE,
    rtt_ms          DOUBLE PRECISION NOT NULL DEFAULT 0,
    throughput_mbps DOUBLE PRECISION NOT NULL DEFAULT 0,
    capacity_bytes  BIGINT,
    used_bytes      BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    checked_at      TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE object_versions (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       BIGINT NOT NULL REFERENCES tenants (id),
    bucket_id       BIGINT NOT NULL REFERENCES buckets (id),
    key             TEXT COLLATE "C" NOT NULL,
    version_id      TEXT NOT NULL,
    is_latest       BOOLEAN NOT NULL,
    is_delete_marker BOOLEAN NOT NULL DEFAULT FALSE,
    size            BIGINT NOT NULL DEFAULT 0,
    etag            TEXT NOT NULL DEFAULT '',
    sha256          BYTEA,
    content_type    TEXT,
    user_metadata   JSONB NOT NULL DEFAULT '{}',
    redundancy_class TEXT NOT NULL,
    part_size       BIGINT NOT NULL DEFAULT 0,
    part_count      INTEGER NOT NULL DEFAULT 0,
    encrypted       BOOLEAN NOT NULL,
    wrapped_key     BYTEA,
    key_id          TEXT,
    key_version     INTEGER,
    wrap_alg        TEXT,
    content_id      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (bucket_id, key, version_id),
    CHECK (NOT encrypted OR (wrapped_key IS NOT NULL AND key_id IS NOT NULL
                             AND key_version IS NOT NULL AND wrap_alg IS NOT NULL))
);
CREATE UNIQUE INDEX object_versions_latest ON object_versions (bucket_id, key) WHERE is_latest;

-- One row per stored piece: (version, backend, part, shard). The checksum is what the
-- backend must give back; status moves pending -> ok -> (corrupt | deleting).
CREATE TABLE replicas (
    id              BIGSERIAL PRIMARY KEY,
    version_pk      BIGINT NOT NULL REFERENCES object_versions (id) ON DELETE CASCADE,
    backend_id      BIGINT NOT NULL REFERENCES backends (id),
    locator         TEXT NOT NULL,
    part_number     INTEGER NOT NULL,
    shard_index     INTEGER NOT NULL DEFAULT -1,
    size            BIGINT NOT NULL,
    sha256          BYTEA NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'ok', 'corrupt', 'missing', 'deleting')),
    verified_at     TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (version_pk, backend_id, part_number, shard_index)
);
CREATE INDEX replicas_backend ON replicas (backend_id, status);

-- Backend objects no metadata row references (deleted versions, failed writes): the vacuumer
-- deletes them from their backend and then this row. Written in the same transaction that
-- drops the reference, so nothing is ever forgotten on a backend.
CREATE TABLE garbage (
    id              BIGSERIAL PRIMARY KEY,
    backend_id      BIGINT NOT NULL REFERENCES backends (id),
    locator         TEXT NOT NULL,
    reason          TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (backend_id, locator)
);

CREATE TABLE jobs (
    id              BIGSERIAL PRIMARY KEY,
    kind            TEXT NOT NULL,
    payload         JSONB NOT NULL,
    status          TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'leased', 'done', 'dead')),
    priority        INTEGER NOT NULL DEFAULT 100,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL DEFAULT 10,
    idempotency_key TEXT,
    lease_owner     TEXT,
    lease_expires_at TIMESTAMPTZ,
    run_after       TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX jobs_ready ON jobs (status, priority, run_after);
-- The same work enqueued twice while the first is still queued or running runs once; once it
-- is done, the same key may be enqueued again (a replica can go bad twice).
CREATE UNIQUE INDEX jobs_active_key ON jobs (idempotency_key)
    WHERE status IN ('queued', 'leased');

CREATE TABLE changelog (
    seq             BIGSERIAL PRIMARY KEY,
    at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    tenant_id       BIGINT,
    bucket_id       BIGINT,
    key             TEXT COLLATE "C",
    version_id      TEXT,
    op              TEXT NOT NULL
);

CREATE TABLE audit_log (
    seq             BIGINT PRIMARY KEY,
    at              TIMESTAMPTZ NOT NULL,
    tenant_id       BIGINT,
    actor           TEXT NOT NULL,
    action          TEXT NOT NULL,
    resource        TEXT NOT NULL,
    request_id      TEXT NOT NULL,
    result          TEXT NOT NULL,
    prev_hash       BYTEA NOT NULL,
    entry_hash      BYTEA NOT NULL UNIQUE
);

-- The chain head: one row, locked FOR UPDATE by every appender, so the chain stays linear.
CREATE TABLE audit_head (
    id              BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    seq             BIGINT NOT NULL,
    entry_hash      BYTEA NOT NULL
);
INSERT INTO audit_head (id, seq, entry_hash) VALUES (TRUE, 0, '\x0000000000000000000000000000000000000000000000000000000000000000');

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE admin_tokens (
    token_hash      TEXT PRIMARY KEY,
    role            TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
