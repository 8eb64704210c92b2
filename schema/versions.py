"""Object versions: the rows the data path reads and commits, and S3's versioning semantics.

``commit_version`` is the single visibility point of a write (invariant 4): the version row,
its replica rows, the superseded version's backend objects (queued in ``garbage``) and the
changelog entry go in the caller's transaction, together with the jobs and the audit entry the
caller adds. Nothing a reader can see exists before that transaction commits.

What the bucket's versioning means for a key (``Unversioned``, ``Enabled``, ``Suspended``) is
decided here and only here: which version a write or a delete supersedes, drops or keeps, when
a delete marker is written, which version becomes the latest after a permanent delete. Every
change locks the rows it changes (the key's latest row ``FOR UPDATE``), and a dropped version's
backend objects go to ``garbage`` (``schema/garbage.py``) in the same transaction, so none is
forgotten and none is deleted while a row still names it. A lost race for the key's latest
slot rolls back a savepoint and retries (``_in_savepoint``).

What it does not do: listings (``schema/listing.py``), replica states after the commit
(``schema/replicas.py``), re-wrapping data keys (``schema/wrapped_keys.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import asyncpg

from core.errors import Conflict, NoSuchBucket
from schema.changelog import ChangelogRepository
from schema.garbage import GarbageRepository
from schema.jobs import JobQueue
from schema.records import (
    DeleteOutcome,
    NewReplica,
    NewVersion,
    ObjectVersion,
    WriteCondition,
    replica_of_row,
    version_of_row,
)

__all__ = ["VersionRepository", "with_replicas"]

T = TypeVar("T")

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


async def with_replicas(
    conn: asyncpg.Connection, row: asyncpg.Record | None
) -> ObjectVersion | None:
    """The version of an ``object_versions`` row with its replica rows; None for no row."""
    if row is None:
        return None
    replicas = await conn.fetch(
        "SELECT * FROM replicas WHERE version_pk = $1 ORDER BY part_number, shard_index, id",
        row["id"],
    )
    return version_of_row(row, [replica_of_row(r) for r in replicas])


async def _in_savepoint(conn: asyncpg.Connection, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run ``attempt`` in a savepoint; after a lost race (``_LOST_RACE``) roll it back and run
    it again, up to ``_COMMIT_ATTEMPTS`` times."""
    for n in range(_COMMIT_ATTEMPTS):
        try:
            async with conn.transaction():
                return await attempt()
        except _LOST_RACE:
            if n == _COMMIT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


class VersionRepository:
    def __init__(self) -> None:
        self._garbage = GarbageRepository()
        self._changelog = ChangelogRepository()
        self._jobs = JobQueue()

    async def get_latest(
        self, conn: asyncpg.Connection, bucket_id: int, key: str
    ) -> ObjectVersion | None:
        row = await conn.fetchrow(
            "SELECT * FROM object_versions WHERE bucket_id = $1 AND key = $2 AND is_latest",
            bucket_id,
            key,
        )
        return await with_replicas(conn, row)

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
        return await with_replicas(conn, row)

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
        return await with_replicas(conn, row)

    async def lock_shared(self, conn: asyncpg.Connection, version_pk: int) -> ObjectVersion | None:
        """The version with its row locked ``FOR SHARE`` until the transaction ends; None if it
        is gone. A copy that shares the version's backend objects takes it: every drop locks
        the row ``FOR UPDATE`` first, so none can hand those objects to ``garbage`` meanwhile."""
        row = await conn.fetchrow(
            "SELECT * FROM object_versions WHERE id = $1 FOR SHARE", version_pk
        )
        return await with_replicas(conn, row)

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
        return await _in_savepoint(conn, lambda: self._commit_once(conn, new, replicas, condition))

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
            " null_version, checksum_algorithm, checksum_value, checksum_type, http_headers,"
            " upload_part_sizes, bp1_header)"
            " VALUES ($1, $2, $3, $4, TRUE, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,"
            " $17, $18, $19, $20, $21, $22, $23, $24, $25, $26) RETURNING *",
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
            list(new.upload_part_sizes) if new.upload_part_sizes is not None else None,
            new.bp1_header,
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
        await self._changelog.record(
            conn, new.tenant_id, new.bucket_id, new.key, new.version_id, "put"
        )
        version = await with_replicas(conn, row)
        assert version is not None
        return version, dropped

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
        version = await with_replicas(conn, row)
        if version is None:
            return None
        await self._drop_version(conn, version.id, reason="deleted")
        await self._changelog.record(conn, tenant_id, bucket_id, key, version.version_id, "delete")
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
        return await _in_savepoint(
            conn,
            lambda: self._marker_once(conn, tenant_id, bucket_id, key, version_id, null_version),
        )

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
                dropped = await with_replicas(conn, previous_null)
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
        await self._changelog.record(conn, tenant_id, bucket_id, key, version_id, "delete_marker")
        marker = await with_replicas(conn, row)
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
        return await _in_savepoint(
            conn,
            lambda: self._delete_version_once(conn, tenant_id, bucket_id, key, version_id),
        )

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
        version = await with_replicas(conn, row)
        if version is None:
            return None
        await self._drop_version(conn, version.id, reason="version deleted")
        if version.is_latest:
            await self._promote_newest(conn, bucket_id, key)
        await self._changelog.record(
            conn, tenant_id, bucket_id, key, version.version_id, "delete_version"
        )
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
        """Delete a (locked) version row: its backend objects to ``garbage``, its pending jobs
        done, then the row (replica rows and parts go with it, cascade)."""
        await self._garbage.add_replicas_of(conn, version_pk, reason)
        await self._jobs.supersede(conn, version_pk)
        await conn.execute("DELETE FROM object_versions WHERE id = $1", version_pk)
