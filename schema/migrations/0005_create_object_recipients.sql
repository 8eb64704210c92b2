-- Extra recipients of an object's data key (sharing): each row is the same data key wrapped for
-- another public key. Metadata only, like rotation.
CREATE TABLE object_recipients (
    version_pk      BIGINT NOT NULL REFERENCES object_versions (id) ON DELETE CASCADE,
    key_id          TEXT NOT NULL,
    key_version     INTEGER NOT NULL,
    wrap_alg        TEXT NOT NULL,
    wrapped_key     BYTEA NOT NULL,
    added_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (version_pk, key_id, key_version)
);
