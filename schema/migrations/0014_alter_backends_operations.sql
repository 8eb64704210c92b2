-- Backends operated at run time (issue 13): how to reach one (signing region, addressing
-- style, whether the gateway may create its bucket), what it is (type, SLA, flags), which
-- tenants it serves, its shared health (state with hysteresis and the moving averages behind
-- it), and its drain and removal.

-- The vendor the operator declared. `kind` stays the transport (s3 or local directory).
ALTER TABLE backends ADD COLUMN backend_type TEXT NOT NULL DEFAULT 'other'
    CHECK (backend_type IN ('aws', 'wasabi', 'minio', 'ceph', 'gcs-interop', 'local', 'other'));
UPDATE backends SET backend_type = 'local' WHERE kind = 'local';
-- Signed for this region (SigV4 scope); path- or virtual-hosted-style requests.
ALTER TABLE backends ADD COLUMN signing_region TEXT NOT NULL DEFAULT 'us-east-1';
ALTER TABLE backends ADD COLUMN addressing_style TEXT NOT NULL DEFAULT 'path'
    CHECK (addressing_style IN ('path', 'virtual', 'auto'));
-- The operator allowed the gateway to create the bucket (`--create-bucket`): a backend that
-- loses it (wiped, restarted empty) gets it back; otherwise a missing bucket is an error.
-- Backends registered before this migration were created that way.
ALTER TABLE backends ADD COLUMN manage_bucket BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE backends SET manage_bucket = TRUE;
-- Service level the operator expects (percent, e.g. 99.9; milliseconds); NULL: none declared.
ALTER TABLE backends ADD COLUMN sla_availability DOUBLE PRECISION
    CHECK (sla_availability IS NULL OR (sla_availability > 0 AND sla_availability <= 100));
ALTER TABLE backends ADD COLUMN sla_latency_ms DOUBLE PRECISION
    CHECK (sla_latency_ms IS NULL OR sla_latency_ms > 0);
-- Flags: data-residency guarantee by contract; the backend supports server-side encryption.
ALTER TABLE backends ADD COLUMN residency BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE backends ADD COLUMN supports_sse BOOLEAN NOT NULL DEFAULT FALSE;
-- Shared health: the recorder's state (healthy / degraded / down) and the moving averages and
-- counters that decide it (core/health.py), so every process sees one state.
ALTER TABLE backends ADD COLUMN health_state TEXT NOT NULL DEFAULT 'healthy'
    CHECK (health_state IN ('healthy', 'degraded', 'down'));
ALTER TABLE backends ADD COLUMN health JSONB NOT NULL DEFAULT '{}';
UPDATE backends SET health_state = 'down' WHERE NOT healthy;
ALTER TABLE backends ADD COLUMN drain_started_at TIMESTAMPTZ;
ALTER TABLE backends ADD COLUMN removed_at TIMESTAMPTZ;

-- A removed backend keeps its row (history, audit) but gives its name back.
ALTER TABLE backends DROP CONSTRAINT backends_name_key;
CREATE UNIQUE INDEX backends_live_name ON backends (name) WHERE state <> 'removed';

-- A backend with rows here serves only these tenants; one without rows serves every tenant.
-- (The other direction, a tenant restricted to some backends, is `tenant_backends`.)
CREATE TABLE backend_tenants (
    backend_id      BIGINT NOT NULL REFERENCES backends (id),
    tenant_id       BIGINT NOT NULL REFERENCES tenants (id),
    PRIMARY KEY (backend_id, tenant_id)
);
CREATE INDEX backend_tenants_tenant ON backend_tenants (tenant_id);
