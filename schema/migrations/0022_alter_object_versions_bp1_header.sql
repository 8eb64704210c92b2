-- Rotation without a ranged GET per object (issue 16, P9): the 112-byte BP1 header an
-- encrypted version starts with, recorded at its commit (the bytes the gateway checked at PUT;
-- for a completed multipart upload, part 1's header; for a shared-piece copy, the source's).
-- `POST /{bucket}?envelopes` serves it with the envelope, 1,000 versions a request.
-- Online: a nullable column without a default is a catalogue change (no rewrite), and the
-- CHECK is added NOT VALID, so no scan of existing rows either (they are all NULL; new rows
-- are checked). NULL: plaintext, a delete marker, or a version committed before this
-- migration (`bp rotate` then reads its header with a ranged GET, as before).
ALTER TABLE object_versions ADD COLUMN bp1_header BYTEA;
ALTER TABLE object_versions ADD CONSTRAINT object_versions_bp1_header_length
    CHECK (bp1_header IS NULL OR length(bp1_header) = 112) NOT VALID;
