-- A completed multipart upload remembers the length of each part the client uploaded (issue
-- 17): GET/HEAD with ?partNumber=N serves exactly that part, as the SDKs' parallel downloads
-- expect. part_sizes (0006) lists the *stored* chunks, which do not mark where a client part
-- ends when it is a multiple of the chunk size. NULL: not a multipart object (one part).
ALTER TABLE object_versions ADD COLUMN upload_part_sizes BIGINT[];
