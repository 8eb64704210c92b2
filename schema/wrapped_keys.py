"""Re-wrapping a version's data key: key rotation without moving a byte.

A client that rotates its key-encryption key sends each version's data key wrapped under the
new one; the swap is a metadata change only (the ciphertext does not depend on how its data key
is wrapped). The rule it keeps: a version is re-wrapped only if it is still wrapped under the
key id and version the client unwrapped (and, if named, is the same content), checked under the
version row's lock, so two rotations racing on one object cannot lose a wrap. The previous
wrapped key is kept in ``wrapped_key_history`` in the same transaction, and the change is
logged (``schema/changelog.py``).

The read side of a rotation is :meth:`WrappedKeyRepository.envelopes`: the envelope and the
stored BP1 header of up to a batch of versions in one query, so a client re-wraps N objects
with O(N/1000) requests instead of a ranged GET each. The header is served as recorded at the
commit, unverified: the client checks it (structure, binding to tenant/bucket/key/content id,
key commitment) before it wraps anything against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from core.errors import NoSuchKey, PreconditionFailed
from schema.changelog import ChangelogRepository
from schema.records import ObjectVersion
from schema.versions import with_replicas

__all__ = ["VersionEnvelope", "WrappedKeyRepository"]


@dataclass(frozen=True, slots=True)
class VersionEnvelope:
    """What rotation needs of one version: its envelope and its BP1 header.

    ``bp1_header`` is None for plaintext and for versions committed before migration 0022
    (the client then reads the header from the object itself).
    """

    key: str
    #: The id S3 clients know (``null`` for the null version).
    version_id: str
    encrypted: bool
    wrapped_key: bytes | None
    key_id: str | None
    key_version: int | None
    wrap_alg: str | None
    content_id: str | None
    bp1_header: bytes | None


# One row per requested (key, version) in request order; no row for a key (or version) that
# does not exist or is a delete marker. A NULL version names the key's current version.
_ENVELOPES = """
SELECT i.ord, v.key, v.version_id, v.null_version, v.encrypted, v.wrapped_key, v.key_id,
       v.key_version, v.wrap_alg, v.content_id, v.bp1_header
FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS i(key, vid, ord)
JOIN LATERAL (
    SELECT o.* FROM object_versions o
    WHERE o.bucket_id = $1 AND o.key = i.key AND NOT o.is_delete_marker AND (
        (i.vid IS NULL AND o.is_latest)
        OR (i.vid = 'null' AND o.null_version)
        OR (i.vid <> 'null' AND o.version_id = i.vid AND NOT o.null_version))
    LIMIT 1
) v ON TRUE
"""


class WrappedKeyRepository:
    def __init__(self) -> None:
        self._changelog = ChangelogRepository()

    async def envelopes(
        self, conn: asyncpg.Connection, bucket_id: int, refs: Sequence[tuple[str, str | None]]
    ) -> list[VersionEnvelope | None]:
        """The envelope and stored header of each ``(key, version_id)`` of one bucket, in
        order: ``version_id`` None is the key's current version, ``"null"`` the null version.
        None where there is no such object or version, or it is a delete marker (the caller
        tells those apart for its error codes). One query whatever the batch size; the bucket
        id is the caller's tenant's (resolved by authorization), so nothing of another tenant
        can match."""
        rows = await conn.fetch(
            _ENVELOPES, bucket_id, [key for key, _ in refs], [vid for _, vid in refs]
        )
        found: list[VersionEnvelope | None] = [None] * len(refs)
        for row in rows:
            wrapped, header = row["wrapped_key"], row["bp1_header"]
            found[row["ord"] - 1] = VersionEnvelope(
                key=row["key"],
                version_id="null" if row["null_version"] else row["version_id"],
                encrypted=row["encrypted"],
                wrapped_key=bytes(wrapped) if wrapped is not None else None,
                key_id=row["key_id"],
                key_version=row["key_version"],
                wrap_alg=row["wrap_alg"],
                content_id=row["content_id"],
                bp1_header=bytes(header) if header is not None else None,
            )
        return found

    async def rewrap(
        self,
        conn: asyncpg.Connection,
        bucket_id: int,
        key: str,
        *,
        expect_key_id: str,
        expect_key_version: int,
        expect_content_id: str | None = None,
        wrapped_key: bytes,
        key_id: str,
        key_version: int,
        wrap_alg: str,
        version_id: str | None = None,
    ) -> ObjectVersion:
        """Swap a version's wrapped data key if it still is the expected one.

        Without ``version_id`` the key's current version is re-wrapped; with it, that version
        (the id S3 clients know, ``null`` for the null version), current or not, so that a
        rotation can leave no version wrapped under a retired key. The row is locked
        ``FOR UPDATE``. The previous entry moves to ``wrapped_key_history`` in the same
        transaction; no backend is touched (the ciphertext does not depend on how its data key
        is wrapped). Raises NoSuchKey (no current object; no such version; the version is a
        delete marker), or PreconditionFailed when the object is not (or no longer) wrapped
        under the expected key id and version (a concurrent rotation, or plaintext).
        """
        what = f"object {key!r}" if version_id is None else f"version {version_id!r} of {key!r}"
        columns = (
            "id, is_delete_marker, encrypted, wrapped_key, key_id, key_version, wrap_alg,"
            " content_id"
        )
        if version_id is None:
            row = await conn.fetchrow(
                f"SELECT {columns} FROM object_versions"
                " WHERE bucket_id = $1 AND key = $2 AND is_latest AND NOT is_delete_marker"
                " FOR UPDATE",
                bucket_id,
                key,
            )
            if row is None:
                raise NoSuchKey(f"no object {key!r}")
        else:
            if version_id == "null":
                row = await conn.fetchrow(
                    f"SELECT {columns} FROM object_versions"
                    " WHERE bucket_id = $1 AND key = $2 AND null_version FOR UPDATE",
                    bucket_id,
                    key,
                )
            else:
                row = await conn.fetchrow(
                    f"SELECT {columns} FROM object_versions WHERE bucket_id = $1 AND key = $2"
                    " AND version_id = $3 AND NOT null_version FOR UPDATE",
                    bucket_id,
                    key,
                    version_id,
                )
            if row is None:
                raise NoSuchKey(f"no {what}")
            if row["is_delete_marker"]:
                raise NoSuchKey(f"{what} is a delete marker")
        if not row["encrypted"]:
            raise PreconditionFailed(f"{what} is not encrypted; nothing to re-wrap")
        if (row["key_id"], row["key_version"]) != (expect_key_id, expect_key_version):
            raise PreconditionFailed(
                f"{what} is wrapped under {row['key_id']} v{row['key_version']},"
                f" not the expected {expect_key_id} v{expect_key_version}"
            )
        if expect_content_id is not None and row["content_id"] != expect_content_id.lower():
            raise PreconditionFailed(
                f"{what} is another version (content id {row['content_id']}) than the"
                f" expected {expect_content_id}"
            )
        await conn.execute(
            "INSERT INTO wrapped_key_history (version_pk, wrapped_key, key_id, key_version,"
            " wrap_alg) VALUES ($1, $2, $3, $4, $5)",
            row["id"],
            row["wrapped_key"],
            row["key_id"],
            row["key_version"],
            row["wrap_alg"],
        )
        updated = await conn.fetchrow(
            "UPDATE object_versions SET wrapped_key = $2, key_id = $3, key_version = $4,"
            " wrap_alg = $5 WHERE id = $1 RETURNING *",
            row["id"],
            wrapped_key,
            key_id,
            key_version,
            wrap_alg,
        )
        version = await with_replicas(conn, updated)
        assert version is not None
        await self._changelog.record(
            conn, version.tenant_id, bucket_id, key, version.version_id, "rewrap"
        )
        return version
