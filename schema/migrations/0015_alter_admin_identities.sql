-- Administrators and tenants at run time (issue 13), and the original design's cold class.

-- The admin role an audit entry was made under (viewer / operator / admin); NULL for entries
-- that no admin made, and for every entry written before this column (their hash is unchanged:
-- schema/audit.py puts the role in the canonical row only when there is one).
ALTER TABLE audit_log ADD COLUMN role TEXT;

-- Bootstrap tokens are revoked, not forgotten: `bulletproof admin token rotate` revokes the
-- token in force in the transaction that stores its successor. Until now every token ever
-- configured stayed valid; all but the newest are revoked here.
ALTER TABLE admin_tokens ADD COLUMN revoked_at TIMESTAMPTZ;
UPDATE admin_tokens SET revoked_at = now()
 WHERE token_hash <> (SELECT token_hash FROM admin_tokens ORDER BY created_at DESC, token_hash
                      LIMIT 1);

-- A disabled tenant or access key is refused (and can be enabled again); a deleted key is gone.
ALTER TABLE tenants ADD COLUMN disabled_at TIMESTAMPTZ;
ALTER TABLE access_keys ADD COLUMN disabled_at TIMESTAMPTZ;

-- The built-in ColdArchiveClass is now the original design's 2-of-6 erasure code (k=2, m=4,
-- write quorum 4: docs/policy.md). Every stored document spells the built-in classes out
-- (dump_policy), so a policy in force that still has the old built-in definition (4 + 2,
-- quorum 5, no placement options) gets a successor version with the new one. History rows are
-- never rewritten; a document that redefined the class in any other way is left as it is.
-- Objects already stored keep the code they were written with (the `parts` rows say which).
INSERT INTO policies (version, document, source, sha256, applied_by, comment)
SELECT p.version + 1, migrated.document, migrated.document,
       sha256(convert_to(migrated.document, 'UTF8')), 'migration 0015',
       'ColdArchiveClass: the built-in class is now 2-of-6 erasure coding (k=2, m=4, write '
       || 'quorum 4); this version replaced the old built-in definition (k=4, m=2, quorum 5)'
  FROM policies p,
       LATERAL (SELECT replace(p.document,
                               E'  ColdArchiveClass:\n    erasure: {k: 4, m: 2, write_quorum: 5}\n',
                               E'  ColdArchiveClass:\n    erasure: {k: 2, m: 4, write_quorum: 4}\n')
                       AS document) AS migrated
 WHERE p.version = (SELECT max(version) FROM policies)
   AND strpos(p.document,
              E'  ColdArchiveClass:\n    erasure: {k: 4, m: 2, write_quorum: 5}\n') > 0
   AND strpos(p.document,
              E'  ColdArchiveClass:\n    erasure: {k: 4, m: 2, write_quorum: 5}\n    ') = 0;
