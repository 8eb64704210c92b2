-- Completed multipart uploads, remembered so that a retried CompleteMultipartUpload (the first
-- answer was lost; s3transfer and the AWS CLI retry on timeouts) answers 200 with the same
-- ETag and version instead of NoSuchUpload, and creates no second version (issue 17). A row
-- is written in the transaction that completes the upload and kept until the upload would
-- have expired (initiated_at + BP_UPLOAD_EXPIRY_S); later completions prune older rows.
CREATE TABLE completed_uploads (
    upload_id       TEXT PRIMARY KEY,
    tenant_id       BIGINT NOT NULL REFERENCES tenants (id),
    bucket_id       BIGINT NOT NULL REFERENCES buckets (id) ON DELETE CASCADE,
    key             TEXT COLLATE "C" NOT NULL,
    -- SHA-256 of the part list the completion named (numbers and ETags, in order).
    parts_digest    TEXT NOT NULL,
    etag            TEXT NOT NULL,
    -- The version id the answer named; NULL for a null version (no x-amz-version-id).
    version_id      TEXT,
    checksum_algorithm TEXT,
    checksum_value  TEXT,
    initiated_at    TIMESTAMPTZ NOT NULL,
    completed_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX completed_uploads_age ON completed_uploads (initiated_at);
