-- Key rotation rewrites metadata only: the previous wrapped data key of a version moves here
-- (kept for audit and recovery, never served), and tenants publish the public keys that
-- server-side flows (imports) encrypt to.
CREATE TABLE wrapped_key_history (
    id              BIGSERIAL PRIMARY KEY,
    version_pk      BIGINT NOT NULL REFERENCES object_versions (id) ON DELETE CASCADE,
    wrapped_key     BYTEA NOT NULL,
    key_id          TEXT NOT NULL,
    key_version     INTEGER NOT NULL,
    wrap_alg        TEXT NOT NULL,
    replaced_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX wrapped_key_history_version ON wrapped_key_history (version_pk);
CREATE INDEX object_versions_key_id ON object_versions (tenant_id, key_id, key_version)
    WHERE encrypted;

CREATE TABLE tenant_public_keys (
    tenant_id       BIGINT NOT NULL REFERENCES tenants (id),
    key_id          TEXT NOT NULL,
    key_version     INTEGER NOT NULL,
    wrap_alg        TEXT NOT NULL,
    public_key_pem  TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key_id, key_version)
);
