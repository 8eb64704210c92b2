-- Audit archives (jobs/audit_archiver.py): chain segments sealed to the archive public key and
-- stored outside PostgreSQL, on a backend designated for archives (never chosen for data:
-- core/placement.py excludes it) or, when there is none, in the configured directory.

ALTER TABLE backends ADD COLUMN archive BOOLEAN NOT NULL DEFAULT FALSE;

-- The archive index: which rows of which chain each sealed segment holds, the entry hash of its
-- last row, and the SHA-256 of the stored (sealed) bytes, so altering or dropping a segment
-- is seen by `bulletproof audit verify`. Append-only like the log.
CREATE TABLE audit_archives (
    id              BIGSERIAL PRIMARY KEY,
    chain_id        TEXT NOT NULL,
    first_seq       BIGINT NOT NULL,
    last_seq        BIGINT NOT NULL CHECK (last_seq >= first_seq),
    last_hash       BYTEA NOT NULL,
    backend_id      BIGINT REFERENCES backends (id),  -- NULL: the configured directory
    locator         TEXT NOT NULL,
    size            BIGINT NOT NULL,
    sha256          BYTEA NOT NULL,
    sealed_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (chain_id, first_seq)
);
CREATE TRIGGER audit_archives_no_update BEFORE UPDATE OR DELETE ON audit_archives
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_archives_no_truncate BEFORE TRUNCATE ON audit_archives
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
