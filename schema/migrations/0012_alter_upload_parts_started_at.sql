-- When the write of an uploaded part started (the database's clock, issue 17). A part re-sent
-- while its first attempt is still running (a client retry after a timeout) may finish
-- first; the older attempt finishing later must not replace it, since the client completes
-- with the ETag it saw acknowledged last. A part replaces the recorded one only if it started
-- no earlier. NULL (parts recorded before this migration): older than any other.
ALTER TABLE upload_parts ADD COLUMN started_at TIMESTAMPTZ;
