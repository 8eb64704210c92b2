-- S3 compatibility (issue 3): multipart uploads, versioning, copies that share replicas,
-- checksums. Portable to CockroachDB: no triggers, no LISTEN/NOTIFY, no advisory locks.

-- A completed multipart upload has parts of different lengths: part_sizes lists each stored
-- part's length in order. NULL means every part is part_size long (the last may be shorter).
ALTER TABLE object_versions ADD COLUMN part_sizes BIGINT[];

-- S3 calls a version written while versioning was off or suspended the "null" version; there
-- is at most one per key. version_id stays unique and time-ordered for every row (jobs, the
-- changelog and the audit log name it); the API shows "null" for these rows.
ALTER TABLE object_versions ADD COLUMN null_version BOOLEAN NOT NULL DEFAULT TRUE;
CREATE UNIQUE INDEX object_versions_null ON object_versions (bucket_id, key) WHERE null_version;
-- ListObjectVersions and the promotion of the next-newest version after a permanent delete.
CREATE INDEX object_versions_history ON object_versions (bucket_id, key, id DESC);

-- The x-amz-checksum-* the client sent (verified on the way in) and returns on request:
-- algorithm (crc32, crc32c, sha1, sha256, crc64nvme), base64 value, FULL_OBJECT or COMPOSITE
-- (a multipart upload's checksum of its parts' checksums, value suffixed "-N").
ALTER TABLE object_versions ADD COLUMN checksum_algorithm TEXT;
ALTER TABLE object_versions ADD COLUMN checksum_value TEXT;
ALTER TABLE object_versions ADD COLUMN checksum_type TEXT
    CHECK (checksum_type IS NULL OR checksum_type IN ('FULL_OBJECT', 'COMPOSITE'));

-- A copy may share its source's backend objects: several replica rows then name the same
-- (backend, locator). The garbage collector deletes a backend object only when no row names
-- it any more; replicas_locator (migration 0003) makes that reference count cheap.

-- Multipart uploads in progress. Parts are written with the quorum writer like objects
-- (placed by the upload's class, checksummed per stored piece); nothing is visible until
-- CompleteMultipartUpload turns the chosen parts into one object version in one transaction.
CREATE TABLE uploads (
    id              BIGSERIAL PRIMARY KEY,
    upload_id       TEXT NOT NULL UNIQUE,
    tenant_id       BIGINT NOT NULL REFERENCES tenants (id),
    bucket_id       BIGINT NOT NULL REFERENCES buckets (id),
    key             TEXT COLLATE "C" NOT NULL,
    initiator       TEXT NOT NULL,
    content_type    TEXT,
    user_metadata   JSONB NOT NULL DEFAULT '{}',
    redundancy_class TEXT NOT NULL,
    encrypted       BOOLEAN NOT NULL,
    wrapped_key     BYTEA,
    key_id          TEXT,
    key_version     INTEGER,
    wrap_alg        TEXT,
    content_id      TEXT,
    checksum_algorithm TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (NOT encrypted OR (wrapped_key IS NOT NULL AND key_id IS NOT NULL
                             AND key_version IS NOT NULL AND wrap_alg IS NOT NULL))
);
CREATE INDEX uploads_listing ON uploads (bucket_id, key, created_at);
CREATE INDEX uploads_age ON uploads (created_at);

-- One row per uploaded part number (a re-upload replaces the row; the old pieces go to
-- garbage in the same transaction). chunks: the part as stored, cut by the quorum writer:
-- [{"size": n, "sha256": hex, "k": k, "m": m}] (k = m = 0 for replicated classes).
CREATE TABLE upload_parts (
    upload_pk       BIGINT NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    part_number     INTEGER NOT NULL CHECK (part_number BETWEEN 1 AND 10000),
    size            BIGINT NOT NULL CHECK (size >= 0),
    etag            TEXT NOT NULL,
    sha256          BYTEA NOT NULL,
    checksum_value  TEXT,
    chunks          JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (upload_pk, part_number)
);

-- The backend objects of uploaded parts: what the vacuumer must not take for orphans, what
-- Abort and expiry hand to garbage, and what Complete turns into replica rows.
CREATE TABLE upload_pieces (
    upload_pk       BIGINT NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    part_number     INTEGER NOT NULL,
    chunk           INTEGER NOT NULL CHECK (chunk >= 0),
    backend_id      BIGINT NOT NULL REFERENCES backends (id),
    shard_index     INTEGER NOT NULL DEFAULT -1,
    locator         TEXT NOT NULL,
    size            BIGINT NOT NULL,
    sha256          BYTEA NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('ok', 'pending')),
    PRIMARY KEY (upload_pk, part_number, chunk, backend_id, shard_index)
);
CREATE INDEX upload_pieces_locator ON upload_pieces (backend_id, locator);
