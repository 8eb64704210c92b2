-- The policy engine's metadata: versioned policy documents, per-tenant placement settings
-- (backend allow-list, jurisdiction allow/deny lists) and the per-part layout and checksum of
-- erasure-coded objects. Portable to CockroachDB: no triggers, no LISTEN/NOTIFY, no advisory
-- locks; concurrent applies are serialised by the primary key on the version number.

-- One row per applied document; the highest version is the policy in force. Rows are never
-- updated or deleted: the table is the policy's history.
CREATE TABLE policies (
    version         INTEGER PRIMARY KEY CHECK (version >= 1),
    document        TEXT NOT NULL,   -- canonical text (dump_policy): exactly what is in force
    source          TEXT NOT NULL,   -- the text as submitted, comments included
    sha256          BYTEA NOT NULL,  -- of document
    applied_by      TEXT NOT NULL,
    comment         TEXT NOT NULL DEFAULT '',
    applied_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A tenant with rows here may place data only on these backends; a tenant without rows is
-- not restricted (an empty allow-list would make every write impossible, so it is not a state).
CREATE TABLE tenant_backends (
    tenant_id       BIGINT NOT NULL REFERENCES tenants (id),
    backend_id      BIGINT NOT NULL REFERENCES backends (id),
    PRIMARY KEY (tenant_id, backend_id)
);
CREATE INDEX tenant_backends_backend ON tenant_backends (backend_id);

ALTER TABLE tenants ADD COLUMN jurisdiction_allow TEXT[] NOT NULL DEFAULT '{}';
ALTER TABLE tenants ADD COLUMN jurisdiction_deny TEXT[] NOT NULL DEFAULT '{}';

-- One row per part of an erasure-coded version: the part's own length and SHA-256 (checked
-- after decoding, on top of each shard's checksum in `replicas`) and the code it was written
-- with. k and m are stored, not looked up from the class, because a later policy may redefine
-- the class; the shards on the backends keep the layout they were written with.
CREATE TABLE parts (
    version_pk      BIGINT NOT NULL REFERENCES object_versions (id) ON DELETE CASCADE,
    part_number     INTEGER NOT NULL CHECK (part_number >= 0),
    size            BIGINT NOT NULL CHECK (size >= 0),
    sha256          BYTEA NOT NULL,
    k               INTEGER NOT NULL CHECK (k >= 1),
    m               INTEGER NOT NULL CHECK (m >= 0 AND k + m <= 256),
    PRIMARY KEY (version_pk, part_number)
);

-- The placement checker finds objects by class when a policy redefines a class.
CREATE INDEX object_versions_class ON object_versions (redundancy_class);
