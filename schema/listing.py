"""The queries behind ListObjects (V1, V2) and ListObjectVersions, and the entries they return.

Listings read only committed rows, page by key in byte order (the ``C`` collation of the key
column, as S3 orders keys) and never lock anything: a listing is a snapshot of each page, not
of the bucket. Delimiters, markers and continuation tokens are the handlers' business; this
module answers "the next ``limit`` entries after this position with this prefix".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

__all__ = ["ListedObject", "ListedVersion", "ListingRepository"]


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


class ListingRepository:
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
    ) -> int:
        """Where a ListObjectVersions marker (key, API version id) stands: the listing goes
        on with the versions of ``key`` whose primary key is below the returned one.

        The marker's version may be gone (the usual empty-a-bucket loop deletes each page
        before asking for the next); S3 then continues after the position it had. Our
        version ids are time-ordered like the primary keys, so that is just below the newest
        remaining version with a smaller id. A deleted null version leaves no trace of its
        position: the listing then goes on with every remaining version of the key."""
        if version_id == "null":
            pk = await conn.fetchval(
                "SELECT id FROM object_versions WHERE bucket_id = $1 AND key = $2 AND null_version",
                bucket_id,
                key,
            )
            if pk is None:
                pk = await conn.fetchval(
                    "SELECT max(id) + 1 FROM object_versions WHERE bucket_id = $1 AND key = $2",
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
            if pk is None:
                pk = await conn.fetchval(
                    "SELECT max(id) + 1 FROM object_versions WHERE bucket_id = $1 AND key = $2"
                    " AND version_id < $3",
                    bucket_id,
                    key,
                    version_id,
                )
        return int(pk) if pk is not None else 0

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
