-- The standard HTTP headers S3 stores with an object and returns on GET/HEAD (issue 3):
-- Cache-Control, Content-Disposition, Content-Encoding, Content-Language, Expires, as sent on
-- PutObject / CreateMultipartUpload / CopyObject (REPLACE). Names lower-cased.
ALTER TABLE object_versions ADD COLUMN http_headers JSONB NOT NULL DEFAULT '{}';
ALTER TABLE uploads ADD COLUMN http_headers JSONB NOT NULL DEFAULT '{}';
