-- Per-tenant request limits (issue 14; core/request_limits.py, docs/operations.md): NULL is
-- the deployment's setting (BP_TENANT_REQUESTS_PER_S, BP_TENANT_BYTES_PER_S,
-- BP_MAX_OPEN_UPLOADS); 0 turns that limit off for the tenant.
ALTER TABLE tenants
    ADD COLUMN requests_per_s   DOUBLE PRECISION CHECK (requests_per_s >= 0),
    ADD COLUMN bytes_per_s      BIGINT CHECK (bytes_per_s >= 0),
    ADD COLUMN max_open_uploads INTEGER CHECK (max_open_uploads >= 0);

-- Open multipart uploads are counted per tenant when one is created (actors/uploads.py):
-- without this index that count scans every open upload.
CREATE INDEX uploads_tenant ON uploads (tenant_id);
