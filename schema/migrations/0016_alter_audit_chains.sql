-- NOT ONLINE: stop the gateways while this runs (it drops audit_head, which an older gateway
-- appends to); docs/operations.md "Upgrades with online migrations".
-- The audit log as one hash chain per tenant plus 'system' (schema/audit.py,
-- core/audit_chain.py), so appenders of different tenants never wait for each other.
-- Existing rows become the sealed 'legacy' chain: chain_seq = seq, hashes untouched (the
-- verifier hashes legacy rows in the form they were written in).
ALTER TABLE audit_log ADD COLUMN chain_id TEXT NOT NULL DEFAULT 'legacy';
ALTER TABLE audit_log ADD COLUMN chain_seq BIGINT;
-- The bytes an access moved (GET, PUT, ...); NULL where no bytes are involved.
ALTER TABLE audit_log ADD COLUMN bytes BIGINT;
ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update;
UPDATE audit_log SET chain_seq = seq;
ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update;
ALTER TABLE audit_log ALTER COLUMN chain_id DROP DEFAULT;
ALTER TABLE audit_log ALTER COLUMN chain_seq SET NOT NULL;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_chain_link UNIQUE (chain_id, chain_seq);

-- seq stays the global id (unique, increasing; not a chain position).
CREATE SEQUENCE audit_log_id_seq OWNED BY audit_log.seq;
SELECT setval('audit_log_id_seq', COALESCE((SELECT max(seq) FROM audit_log), 0) + 1, false);
ALTER TABLE audit_log ALTER COLUMN seq SET DEFAULT nextval('audit_log_id_seq');

-- A tenant's own access log, by time.
CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at, seq);

-- One head per chain, locked FOR UPDATE by that chain's appenders only.
CREATE TABLE audit_heads (
    chain_id        TEXT PRIMARY KEY,
    seq             BIGINT NOT NULL,
    entry_hash      BYTEA NOT NULL
);
INSERT INTO audit_heads (chain_id, seq, entry_hash)
    SELECT 'legacy', seq, entry_hash FROM audit_head WHERE seq > 0;
DROP TABLE audit_head;

-- Signed checkpoints of every chain head (jobs/audit_checkpointer.py); append-only too. The
-- signed JSON is kept as text, byte for byte as signed.
CREATE TABLE audit_checkpoints (
    id              BIGSERIAL PRIMARY KEY,
    at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    signed          TEXT NOT NULL
);
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
