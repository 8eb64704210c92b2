-- Open multipart uploads are counted per tenant when one is created (BP_MAX_OPEN_UPLOADS,
-- actors/uploads.py): without this index that count scans every open upload.
CREATE INDEX uploads_tenant ON uploads (tenant_id);
