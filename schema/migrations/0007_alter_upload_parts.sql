-- Multipart uploads (issue 3), what a part records beyond migration 0006:
-- bp1_header: part 1 of an encrypted upload starts with the object's BP1 header (112 bytes,
--   structurally checked when the part is uploaded). The object's length is known only at
--   CompleteMultipartUpload, which checks it against the length this header implies.
-- placement: the rules the part's pieces were placed under (policy version and a digest of
--   the bucket's and tenant's placement settings, or 'changed' when they changed while the
--   part was written). Complete marks the object for the placement checker unless every
--   listed part was placed under the rules in force at its commit.
ALTER TABLE upload_parts ADD COLUMN bp1_header BYTEA
    CHECK (bp1_header IS NULL OR length(bp1_header) = 112);
ALTER TABLE upload_parts ADD COLUMN placement TEXT NOT NULL DEFAULT 'changed';
