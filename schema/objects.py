"""Object versions and their replicas: the aggregate the data path reads and commits.

``commit_version`` is the single visibility point of a write (invariant 4): the version row,
its replica rows, the superseded version's backend objects (moved to ``garbage``) and the
changelog entry go in the caller's transaction, together with the jobs and the audit entry the
caller adds. Nothing a reader can see exists before that transaction commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from core.envelope import EnvelopeColumns
from core.errors import Conflict, NoSuchBucket, NoSuchKey, PreconditionFailed
from core.etags import etag_matches
from schema.db import jsonb_dict
from schema.records import ObjectVersion, Replica

__all__ = [
    "DeleteOutcome",
    "ListedObject",
    "ListedVersion",
    "NewReplica",
    "NewVersion",
    "ObjectRepository",
    "WriteCondition",
    "envelope_of_row",
]

#: How often a commit retries after losing a race for the key's "latest" slot (two writers
#: that both saw no current version: the loser's insert hits the unique index). Each lost
#: attempt means another writer committed, so a key that keeps being deleted and recreated
#: by many writers at once needs more than a couple.
_COMMIT_ATTEMPTS = 10
#: What losing a race for a key's rows looks like: the loser's insert hits the unique "latest"
#: index, or PostgreSQL picks it as the victim of a lock cycle (a promotion after a permanent
#: delete against a commit). Both only roll back the savepoint; the attempt is retried.
_LOST_RACE = (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError)
#: How often a writer looks for the key's latest row again after the one it waited for was
#: superseded meanwhile (each round means another writer committed: progress, not a spin).
_LOCK_ROUNDS = 100


@dataclass(frozen=True)
class NewVersion:
    tenant_id: int
    bucket_id: int
    key: str
    version_id: str
    size: int
    etag: str
    #: SHA-256 of the whole object; None when it is not known (a completed multipart upload:
    #: its parts were hashed separately and nothing reads the whole object at Complete).
    sha256: bytes | None
    content_type: str | None
    user_metadata: dict[str, str]
    redundancy_class: str
    part_size: int
    part_count: int
    encrypted: bool
    wrapped_key: bytes | None = None
    key_id: str | None = None
    key_version: int | None = None
    wrap_alg: str | None = None
    content_id: str | None = None
    part_sizes: tuple[int, ...] | None = None
    checksum_algorithm: str | None = None
    checksum_value: str | None = None
    checksum_type: str | None = None
    http_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WriteCondition:
    """A conditional write (PUT, CompleteMultipartUpload, CopyObject): checked against the
    current version under its row lock in the commit transaction, so two racing conditional
    creates cannot both succeed.

    ``if_none_match="*"``: only if no current object (a delete marker counts as none).
    ``if_match``: only if the current object's ETag is this one (``*``: any current object).
    """

    if_match: str | None = None
    if_none_match: str | None = None

    def check(self, current_etag: str | None) -> None:
        """Raise PreconditionFailed (or NoSuchKey for If-Match on a missing object)."""
        if self.if_none_match is not None:
            if self.if_none_match.strip() != "*":
                raise PreconditionFailed("If-None-Match on a write only takes *")
            if current_etag is not None:
                raise PreconditionFailed("the object already exists (If-None-Match: *)")
        if self.if_match is not None:
            if current_etag is None:
                raise NoSuchKey("If-Match: the object does not exist")
            if not etag_matches(self.if_match, current_etag):
                raise PreconditionFailed("the object's ETag does not match If-Match")


@dataclass(frozen=True)
class NewReplica:
    backend_id: int
    locator: str
    part_number: int
    size: int
    sha256: bytes
    status: str
    shard_index: int = -1


@dataclass(frozen=True)
class ListedObject:
    key: str
    size: int
    etag: str
    last_modified: Any


@dataclass(frozen=True)
class ListedVersion:
    """One entry of ListObjectVersions: a stored version or a delete marker."""

    pk: int
    key: str
    version_id: str  # as S3 clients see it ("null" for the key's null version)
    is_latest: bool
    is_delete_marker: bool
    size: int
    etag: str
    last_modified: Any


@dataclass(frozen=True)
class DeleteOutcome:
    """What a DeleteObject did, as its response tells it.

    ``version_id``: the (API) id of the delete marker it created or of the version it removed
    permanently; None for a delete in an unversioned bucket. ``delete_marker``: a marker was
    created, or the version removed was one. ``removed``: the version whose row is gone (its
    backend objects went to ``garbage`` in the transaction), if any.
    """

    version_id: str | None
    delete_marker: bool
    removed: ObjectVersion | None = None

    @property
    def garbage(self) -> bool:
        return self.removed is not None and bool(self.removed.replicas)


def _replica(row: asyncpg.Record) -> Replica:
    return Replica(
        id=row["id"],
        backend_id=row["backend_id"],
        locator=row["locator"],
        part_number=row["part_number"],
        shard_index=row["shard_index"],
        size=row["size"],
        sha256=bytes(row["sha256"]),
        status=row["status"],
    )


def envelope_of_row(row: asyncpg.Record) -> EnvelopeColumns:
    """The envelope columns of an ``object_versions`` or ``uploads`` row."""
    wrapped = row["wrapped_key"]
    return EnvelopeColumns(
        encrypted=row["encrypted"],
        wrapped_key=bytes(wrapped) if wrapped is not None else None,
        key_id=row["key_id"],
        key_version=row["key_version"],
        wrap_alg=row["wrap_alg"],
        content_id=row["content_id"],
    )


def _version(row: asyncpg.Record, replicas: Sequence[Replica]) -> ObjectVersion:
    return ObjectVersion(
        id=row["id"],
        tenant_id=row["tenant_id"],
        bucket_id=row["bucket_id"],
        key=row["key"],
        version_id=row["version_id"],
        is_latest=row["is_latest"],
        is_delete_marker=row["is_delete_marker"],
        size=row["size"],
        etag=row["etag"],
        sha256=bytes(row["sha256"]) if row["sha256"] is not None else None,
        content_type=row["content_type"],
        user_metadata=jsonb_dict(row["user_metadata"]),
        redundancy_class=row["redundancy_class"],
        part_size=row["part_size"],
        part_count=row["part_count"],
        **envelope_of_row(row),
        created_at=row["created_at"],
        replicas=tuple(replicas),
        part_sizes=tuple(row["part_sizes"]) if row["part_sizes"] is not None else None,
        null_version=row["null_version"],
        checksum_algorithm=row["checksum_algorithm"],
        checksum_value=row["checksum_value"],
        checksum_type=row["checksum_type"],
        http_headers=jsonb_dict(row["http_headers"]),
    )


class ObjectRepository:
    async def _with_replicas(
        self, conn: asyncpg.Connection, row: asyncpg.Record | None
    ) -> ObjectVersion | None:
        if row is None:
            return None
        replicas = await conn.fetch(
            "SELECT * FROM replicas WHERE version_pk = $1 ORDER BY part_number, shard_index, id",
            row["id"],
        )
        return _version(row, [_replica(r) for r in replicas])

    async def get_latest(
        self, conn: asyncpg.Connection, bucket_id: int, key: str
    ) -> ObjectVersion | None:
        row = await conn.fetchrow(
            "SELECT * FROM object_versions WHERE bucket_id = $1 AND key = $2 AND is_latest",
            bucket_id,
            key,
        )
        return await self._with_replicas(conn, row)

    async def get_version(
        self, conn: asyncpg.Connection, bucket_id: int, key: str, version_id: str
    ) -> ObjectVersion | None:
        """A version by the id S3 clients know (``null``: the key's null version); delete
        markers included (the caller decides what they mean)."""
        if version_id == "null":
            row = await conn.fetchrow(
                "SELECT * FROM object_versions WHERE bucket_id = $1 AND key = $2 AND null_version",
                bucket_id,
                key,
            )
        else:
            row = await conn.fetchrow(
                "SELECT * FROM object_versions WHERE bucket_id = $1 AND key = $2"
                " AND version_id = $3 AND NOT null_version",
                bucket_id,
                key,
                version_id,
            )
        return await self._with_replicas(conn, row)

    async def _lock_latest(
        self, conn: asyncpg.Connection, bucket_id: int, key: str, columns: str
    ) -> asyncpg.Record | None:
        """The key's latest row (``columns`` of it), locked ``FOR UPDATE``; None if it has none.

        A writer that waited for the lock of a row which meanwhile stopped being the latest gets
        no row (READ COMMITTED re-checks only the row it waited for), although the writer it
        waited for committed a new latest row. Inserting then would lose the race for the
        latest slot, and with N writers queued on one key all N-1 waiters would lose at each
        commit (a thundering herd that exhausts the savepoint retries). So the latest row is
        looked up again, and the waiters queue on the new one instead.
        """
        for _ in range(_LOCK_ROUNDS):
            row = await conn.fetchrow(
                f"SELECT {columns} FROM object_versions"
                " WHERE bucket_id = $1 AND key = $2 AND is_latest FOR UPDATE",
                bucket_id,
                key,
            )
            if row is not None:
                return row
            moved = await conn.fetchval(
                "SELECT 1 FROM object_versions WHERE bucket_id = $1 AND key = $2 AND is_latest",
                bucket_id,
                key,
            )
            if moved is None:
                return None
        return None  # endless churn on the key: the insert's savepoint retry decides

    async def get_by_pk(self, conn: asyncpg.Connection, version_pk: int) -> ObjectVersion | None:
        row = await conn.fetchrow("SELECT * FROM object_versions WHERE id = $1", version_pk)
        return await self._with_replicas(conn, row)

    async def commit_version(
        self,
        conn: asyncpg.Connection,
        new: NewVersion,
        replicas: Sequence[NewReplica],
        *,
        condition: WriteCondition | None = None,
    ) -> tuple[ObjectVersion, int | None]:
        """Insert ``new`` as the latest version of its key, as the bucket's versioning says.

        Unversioned: the current version is dropped (its replicas move to ``garbage`` in this
        transaction). Enabled: it stays as a noncurrent version. Suspended: the new version is
        the key's null version, replacing the previous null version wherever it stands.
        ``condition`` is checked against the current version under its row lock. Returns the
        committed version and the primary key of a version it dropped (garbage to collect).
        """
        for attempt in range(_COMMIT_ATTEMPTS):
            try:
                async with conn.transaction():  # a savepoint: a lost race retries cleanly
                    return await self._commit_once(conn, new, replicas, condition)
            except _LOST_RACE:
                if attempt == _COMMIT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _commit_once(
        self,
        conn: asyncpg.Connection,
        new: NewVersion,
        replicas: Sequence[NewReplica],
        condition: WriteCondition | None,
    ) -> tuple[ObjectVersion, int | None]:
        versioning = await conn.fetchval(
            "SELECT versioning FROM buckets WHERE id = $1", new.bucket_id
        )
        old = await self._lock_latest(
            conn, new.bucket_id, new.key, "id, etag, is_delete_marker, null_version"
        )
        if condition is not None:
            live = old is not None and not old["is_delete_marker"]
            condition.check(old["etag"] if live and old is not None else None)
        null_version = versioning != "Enabled"
        dropped: int | None = None
        if old is not None:
            if versioning == "Unversioned" or (null_version and old["null_version"]):
                await self._drop_version(conn, old["id"], reason="superseded")
                dropped = old["id"]
            else:
                await conn.execute(
                    "UPDATE object_versions SET is_latest = FALSE WHERE id = $1", old["id"]
                )
        if null_version and versioning == "Suspended":
            previous_null = await conn.fetchval(
                "SELECT id FROM object_versions WHERE bucket_id = $1 AND key = $2"
                " AND null_version FOR UPDATE",
                new.bucket_id,
                new.key,
            )
            if previous_null is not None:
                await self._drop_version(conn, previous_null, reason="superseded")
                dropped = previous_null
        row = await conn.fetchrow(
            "INSERT INTO object_versions (tenant_id, bucket_id, key, version_id, is_latest, size,"
            " etag, sha256, content_type, user_metadata, redundancy_class, part_size, part_count,"
            " encrypted, wrapped_key, key_id, key_version, wrap_alg, content_id, part_sizes,"
            " null_version, checksum_algorithm, checksum_value, checksum_type, http_headers)"
            " VALUES ($1, $2, $3, $4, TRUE, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,"
            " $17, $18, $19, $20, $21, $22, $23, $24) RETURNING *",
            new.tenant_id,
            new.bucket_id,
            new.key,
            new.version_id,
            new.size,
            new.etag,
            new.sha256,
            new.content_type,
            new.user_metadata,
            new.redundancy_class,
            new.part_size,
            new.part_count,
            new.encrypted,
            new.wrapped_key,
            new.key_id,
            new.key_version,
            new.wrap_alg,
            new.content_id,
            list(new.part_sizes) if new.part_sizes is not None else None,
            null_version,
            new.checksum_algorithm,
            new.checksum_value,
            new.checksum_type,
            new.http_headers,
        )
        assert row is not None
        await conn.executemany(
            "INSERT INTO replicas (version_pk, backend_id, locator, part_number, shard_index, size,"
            " sha256, status, verified_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8,"
            " CASE WHEN $8 = 'ok' THEN now() END)",
            [
                (
                    row["id"],
                    r.backend_id,
                    r.locator,
                    r.part_number,
                    r.shard_index,
                    r.size,
                    r.sha256,
                    r.status,
                )
                for r in replicas
            ],
        )
        await self._changelog(conn, new.tenant_id, new.bucket_id, new.key, new.version_id, "put")
        version = await self._with_replicas(conn, row)
        assert version is not None
        return version, dropped

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
        version = await self._with_replicas(conn, updated)
        assert version is not None
        await self._changelog(conn, version.tenant_id, bucket_id, key, version.version_id, "rewrap")
        return version

    async def delete_latest(
        self, conn: asyncpg.Connection, tenant_id: int, bucket_id: int, key: str
    ) -> ObjectVersion | None:
        """Remove the current version (unversioned bucket); its replicas move to garbage."""
        row = await conn.fetchrow(
            "SELECT * FROM object_versions WHERE bucket_id = $1 AND key = $2 AND is_latest"
            " FOR UPDATE",
            bucket_id,
            key,
        )
        version = await self._with_replicas(conn, row)
        if version is None:
            return None
        await self._drop_version(conn, version.id, reason="deleted")
        await self._changelog(conn, tenant_id, bucket_id, key, version.version_id, "delete")
        return version

    async def delete_current(
        self,
        conn: asyncpg.Connection,
        tenant_id: int,
        bucket_id: int,
        key: str,
        *,
        marker_version_id: str,
    ) -> DeleteOutcome:
        """DeleteObject without a version id, as the bucket's versioning says.

        Unversioned: the current version is removed (``delete_latest``). Enabled: a delete
        marker with ``marker_version_id`` becomes the latest version (also when there was no
        object, as S3 does). Suspended: the marker is the key's null version, replacing the
        previous null version wherever it stands (its backend objects go to ``garbage``).
        """
        # FOR SHARE: a concurrent DeleteBucket or PutBucketVersioning (FOR UPDATE) lands wholly
        # before (a deleted bucket is NoSuchBucket, not a foreign-key failure) or after.
        versioning = await conn.fetchval(
            "SELECT versioning FROM buckets WHERE id = $1 FOR SHARE", bucket_id
        )
        if versioning is None:
            raise NoSuchBucket("the bucket no longer exists")
        if versioning == "Unversioned":
            removed = await self.delete_latest(conn, tenant_id, bucket_id, key)
            return DeleteOutcome(None, False, removed)
        marker, dropped = await self.put_delete_marker(
            conn,
            tenant_id,
            bucket_id,
            key,
            marker_version_id,
            null_version=versioning != "Enabled",
        )
        return DeleteOutcome(marker.api_version_id, True, dropped)

    async def put_delete_marker(
        self,
        conn: asyncpg.Connection,
        tenant_id: int,
        bucket_id: int,
        key: str,
        version_id: str,
        *,
        null_version: bool,
    ) -> tuple[ObjectVersion, ObjectVersion | None]:
        """Insert a delete marker as the latest version of ``key``.

        The current version stays as a noncurrent version, unless the marker is a null version
        (suspended versioning): then the key's previous null version, current or not, is
        dropped (replicas to ``garbage``). Returns the marker and the version dropped, if any.
        A lost race for the latest slot retries from a savepoint, like ``commit_version``.
        """
        for attempt in range(_COMMIT_ATTEMPTS):
            try:
                async with conn.transaction():
                    return await self._marker_once(
                        conn, tenant_id, bucket_id, key, version_id, null_version
                    )
            except _LOST_RACE:
                if attempt == _COMMIT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _marker_once(
        self,
        conn: asyncpg.Connection,
        tenant_id: int,
        bucket_id: int,
        key: str,
        version_id: str,
        null_version: bool,
    ) -> tuple[ObjectVersion, ObjectVersion | None]:
        old = await self._lock_latest(conn, bucket_id, key, "id, null_version")
        dropped: ObjectVersion | None = None
        if old is not None:
            if null_version and old["null_version"]:
                dropped = await self.get_by_pk(conn, old["id"])
                await self._drop_version(conn, old["id"], reason="superseded")
            else:
                await conn.execute(
                    "UPDATE object_versions SET is_latest = FALSE WHERE id = $1", old["id"]
                )
        if null_version and dropped is None:
            previous_null = await conn.fetchrow(
                "SELECT * FROM object_versions WHERE bucket_id = $1 AND key = $2"
                " AND null_version FOR UPDATE",
                bucket_id,
                key,
            )
            if previous_null is not None:
                dropped = await self._with_replicas(conn, previous_null)
                await self._drop_version(conn, previous_null["id"], reason="superseded")
        row = await conn.fetchrow(
            "INSERT INTO object_versions (tenant_id, bucket_id, key, version_id, is_latest,"
            " is_delete_marker, size, etag, redundancy_class, encrypted, null_version)"
            " VALUES ($1, $2, $3, $4, TRUE, TRUE, 0, '', '', FALSE, $5) RETURNING *",
            tenant_id,
            bucket_id,
            key,
            version_id,
            null_version,
        )
        await self._changelog(conn, tenant_id, bucket_id, key, version_id, "delete_marker")
        marker = await self._with_replicas(conn, row)
        assert marker is not None
        return marker, dropped

    async def delete_version(
        self, conn: asyncpg.Connection, tenant_id: int, bucket_id: int, key: str, version_id: str
    ) -> ObjectVersion | None:
        """Remove one version (or delete marker) permanently, by its API id (``null``: the
        null version). Its replicas go to ``garbage``; if it was the latest, the next newest
        version (by primary key, i.e. commit order) becomes the latest. None if no such
        version. The row is locked first, so a concurrent commit that made it noncurrent is
        seen (then nothing is promoted). A lost lock race retries from a savepoint."""
        for attempt in range(_COMMIT_ATTEMPTS):
            try:
                async with conn.transaction():
                    return await self._delete_version_once(
                        conn, tenant_id, bucket_id, key, version_id
                    )
            except _LOST_RACE:
                if attempt == _COMMIT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _delete_version_once(
        self, conn: asyncpg.Connection, tenant_id: int, bucket_id: int, key: str, version_id: str
    ) -> ObjectVersion | None:
        if version_id == "null":
            row = await conn.fetchrow(
                "SELECT * FROM object_versions WHERE bucket_id = $1 AND key = $2 AND null_version"
                " FOR UPDATE",
                bucket_id,
                key,
            )
        else:
            row = await conn.fetchrow(
                "SELECT * FROM object_versions WHERE bucket_id = $1 AND key = $2"
                " AND version_id = $3 AND NOT null_version FOR UPDATE",
                bucket_id,
                key,
                version_id,
            )
        version = await self._with_replicas(conn, row)
        if version is None:
            return None
        await self._drop_version(conn, version.id, reason="version deleted")
        if version.is_latest:
            await self._promote_newest(conn, bucket_id, key)
        await self._changelog(conn, tenant_id, bucket_id, key, version.version_id, "delete_version")
        return version

    async def _promote_newest(self, conn: asyncpg.Connection, bucket_id: int, key: str) -> None:
        """Make the newest remaining version of ``key`` the latest. A candidate deleted by a
        concurrent transaction (its UPDATE then touches no row) is skipped by asking again;
        a concurrent writer that took the latest slot meanwhile wins (nothing to promote)."""
        for _ in range(16):
            candidate = await conn.fetchval(
                "SELECT id FROM object_versions WHERE bucket_id = $1 AND key = $2"
                " ORDER BY id DESC LIMIT 1",
                bucket_id,
                key,
            )
            if candidate is None:
                return
            try:
                async with conn.transaction():
                    promoted = await conn.fetchval(
                        "UPDATE object_versions SET is_latest = TRUE WHERE id = $1 RETURNING id",
                        candidate,
                    )
            except asyncpg.UniqueViolationError:
                return  # a concurrent write committed a new latest version
            if promoted is not None:
                return
        raise Conflict("the key's versions changed concurrently; retry the delete")

    async def _drop_version(
        self, conn: asyncpg.Connection, version_pk: int, *, reason: str
    ) -> None:
        await conn.execute(
            "INSERT INTO garbage (backend_id, locator, reason)"
            " SELECT backend_id, locator, $2 FROM replicas WHERE version_pk = $1"
            " ON CONFLICT (backend_id, locator) DO NOTHING",
            version_pk,
            reason,
        )
        await conn.execute(
            "UPDATE jobs SET status = 'done', last_error = 'version superseded', updated_at = now()"
            " WHERE status IN ('queued', 'leased') AND (payload->>'version_pk')::bigint = $1",
            version_pk,
        )
        await conn.execute("DELETE FROM object_versions WHERE id = $1", version_pk)

    async def _changelog(
        self,
        conn: asyncpg.Connection,
        tenant_id: int,
        bucket_id: int,
        key: str,
        version_id: str,
        op: str,
    ) -> None:
        await conn.execute(
            "INSERT INTO changelog (tenant_id, bucket_id, key, version_id, op)"
            " VALUES ($1, $2, $3, $4, $5)",
            tenant_id,
            bucket_id,
            key,
            version_id,
            op,
        )

    async def list_latest(
        self,
        conn: asyncpg.Connection,
        bucket_id: int,
        *,
        prefix: str,
        after: str,
        limit: int,
        inclusive: bool = False,
    ) -> list[ListedObject]:
        """Current, non-deleted versions after ``after`` (or from it, ``inclusive``) that have
        the prefix, in byte order (the C collation of the key column)."""
        op = ">=" if inclusive else ">"
        rows = await conn.fetch(
            "SELECT key, size, etag, created_at FROM object_versions"
            f" WHERE bucket_id = $1 AND is_latest AND NOT is_delete_marker AND key {op} $2"
            " AND key >= $3 AND left(key, length($3)) = $3"
            " ORDER BY key LIMIT $4",
            bucket_id,
            after,
            prefix,
            limit,
        )
        return [ListedObject(r["key"], r["size"], r["etag"], r["created_at"]) for r in rows]

    async def version_position(
        self, conn: asyncpg.Connection, bucket_id: int, key: str, version_id: str
    ) -> int | None:
        """The primary key of a version by its API id (a ListObjectVersions marker)."""
        if version_id == "null":
            pk = await conn.fetchval(
                "SELECT id FROM object_versions WHERE bucket_id = $1 AND key = $2 AND null_version",
                bucket_id,
                key,
            )
        else:
            pk = await conn.fetchval(
                "SELECT id FROM object_versions WHERE bucket_id = $1 AND key = $2"
                " AND version_id = $3 AND NOT null_version",
                bucket_id,
                key,
                version_id,
            )
        return int(pk) if pk is not None else None

    async def list_versions(
        self,
        conn: asyncpg.Connection,
        bucket_id: int,
        *,
        prefix: str,
        after_key: str,
        inclusive: bool = False,
        before_pk: int | None = None,
        limit: int,
    ) -> list[ListedVersion]:
        """Every version and delete marker with the prefix, by key (byte order) and newest
        first within a key, starting after ``after_key`` (from it, ``inclusive``); with
        ``before_pk``, the versions of ``after_key`` older than that version come first."""
        if before_pk is not None:
            position = "(key > $2 OR (key = $2 AND id < $5))"
        else:
            position = "key >= $2" if inclusive else "key > $2"
        rows = await conn.fetch(
            "SELECT id, key, version_id, null_version, is_latest, is_delete_marker, size, etag,"
            " created_at FROM object_versions"
            f" WHERE bucket_id = $1 AND key >= $2 AND {position}"
            " AND key >= $3 AND left(key, length($3)) = $3"
            " ORDER BY key, id DESC LIMIT $4",
            bucket_id,
            after_key,
            prefix,
            limit,
            *([before_pk] if before_pk is not None else []),
        )
        return [
            ListedVersion(
                pk=r["id"],
                key=r["key"],
                version_id="null" if r["null_version"] else r["version_id"],
                is_latest=r["is_latest"],
                is_delete_marker=r["is_delete_marker"],
                size=r["size"],
                etag=r["etag"],
                last_modified=r["created_at"],
            )
            for r in rows
        ]

    async def set_replica_status(
        self, conn: asyncpg.Connection, replica_ids: Sequence[int], status: str
    ) -> int:
        result = await conn.execute(
            "UPDATE replicas SET status = $2,"
            " verified_at = CASE WHEN $2 = 'ok' THEN now() ELSE verified_at END"
            " WHERE id = ANY($1::bigint[]) AND status <> 'deleting'",
            list(replica_ids),
            status,
        )
        return int(result.split()[-1])

    async def pending_replicas_done(
        self, conn: asyncpg.Connection, version_pk: int, backend_id: int
    ) -> None:
        """Every pending part of this version on this backend was acknowledged."""
        await conn.execute(
            "UPDATE replicas SET status = 'ok', verified_at = now()"
            " WHERE version_pk = $1 AND backend_id = $2 AND status = 'pending'",
            version_pk,
            backend_id,
        )

    async def add_garbage(
        self, conn: asyncpg.Connection, items: Sequence[tuple[int, str]], reason: str
    ) -> None:
        await conn.executemany(
            "INSERT INTO garbage (backend_id, locator, reason) VALUES ($1, $2, $3)"
            " ON CONFLICT (backend_id, locator) DO NOTHING",
            [(b, loc, reason) for b, loc in items],
        )

    async def take_garbage(
        self, conn: asyncpg.Connection, limit: int
    ) -> list[tuple[int, int, str]]:
        rows = await conn.fetch(
            "SELECT id, backend_id, locator FROM garbage ORDER BY id LIMIT $1"
            " FOR UPDATE SKIP LOCKED",
            limit,
        )
        return [(r["id"], r["backend_id"], r["locator"]) for r in rows]

    async def forget_garbage(self, conn: asyncpg.Connection, garbage_ids: Sequence[int]) -> None:
        await conn.execute("DELETE FROM garbage WHERE id = ANY($1::bigint[])", list(garbage_ids))

    async def referenced(
        self, conn: asyncpg.Connection, items: Sequence[tuple[int, str]]
    ) -> set[tuple[int, str]]:
        """Which of these (backend id, locator) pairs a replica row (of any version: copies
        share backend objects) or a multipart upload's part still references."""
        rows = await conn.fetch(
            "SELECT r.backend_id, r.locator FROM replicas r"
            " JOIN unnest($1::bigint[], $2::text[]) AS g(backend_id, locator)"
            " ON r.backend_id = g.backend_id AND r.locator = g.locator"
            " UNION SELECT u.backend_id, u.locator FROM upload_pieces u"
            " JOIN unnest($1::bigint[], $2::text[]) AS g(backend_id, locator)"
            " ON u.backend_id = g.backend_id AND u.locator = g.locator",
            [b for b, _ in items],
            [loc for _, loc in items],
        )
        return {(r["backend_id"], r["locator"]) for r in rows}
