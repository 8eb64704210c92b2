-- Temporary credentials from AssumeRoleWithWebIdentity (issue 14, gateway/sts.py): an access
-- key row like any other (its secret sealed with the master key), plus when it expires, the
-- SHA-256 of the session token every request must carry (X-Amz-Security-Token), and which
-- OIDC issuer and subject it was issued to (revocation by subject, the audit trail).
-- Permanent keys have none of these.
ALTER TABLE access_keys ADD COLUMN expires_at TIMESTAMPTZ;
ALTER TABLE access_keys ADD COLUMN session_token_sha256 BYTEA;
ALTER TABLE access_keys ADD COLUMN session_issuer TEXT;
ALTER TABLE access_keys ADD COLUMN session_subject TEXT;
ALTER TABLE access_keys ADD CONSTRAINT access_keys_session_fields CHECK (
    (expires_at IS NULL) = (session_token_sha256 IS NULL)
    AND (expires_at IS NULL) = (session_subject IS NULL)
    AND (expires_at IS NULL) = (session_issuer IS NULL));
CREATE INDEX access_keys_session_subject ON access_keys (session_subject)
    WHERE session_subject IS NOT NULL;
