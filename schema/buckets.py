"""Buckets: named per tenant, so one tenant never learns another's bucket names."""

from __future__ import annotations

import asyncpg

from core.errors import BucketAlreadyExists, BucketNotEmpty, NoSuchBucket
from schema.records import Bucket
from schema.uploads import UploadRepository

__all__ = ["BucketRepository"]


def _bucket(row: asyncpg.Record) -> Bucket:
    return Bucket(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        default_class=row["default_class"],
        region_lock=tuple(row["region_lock"]),
        versioning=row["versioning"],
        created_at=row["created_at"],
    )


class BucketRepository:
    async def create(
        self,
        conn: asyncpg.Connection,
        tenant_id: int,
        name: str,
        *,
        default_class: str | None = None,
        region_lock: tuple[str, ...] = (),
    ) -> Bucket:
        try:
            row = await conn.fetchrow(
                "INSERT INTO buckets (tenant_id, name, default_class, region_lock)"
                " VALUES ($1, $2, $3, $4) RETURNING *",
                tenant_id,
                name,
                default_class,
                list(region_lock),
            )
        except asyncpg.UniqueViolationError as exc:
            raise BucketAlreadyExists(f"bucket {name!r} already exists") from exc
        assert row is not None
        return _bucket(row)

    async def get(self, conn: asyncpg.Connection, tenant_id: int, name: str) -> Bucket:
        row = await conn.fetchrow(
            "SELECT * FROM buckets WHERE tenant_id = $1 AND name = $2", tenant_id, name
        )
        if row is None:
            raise NoSuchBucket(f"bucket {name!r} does not exist")
        return _bucket(row)

    async def find_by_name(self, conn: asyncpg.Connection, name: str) -> list[Bucket]:
        """Every tenant's bucket called ``name`` (admin use only: tenants never see this)."""
        rows = await conn.fetch("SELECT * FROM buckets WHERE name = $1 ORDER BY id", name)
        return [_bucket(r) for r in rows]

    async def list(self, conn: asyncpg.Connection, tenant_id: int) -> list[Bucket]:
        rows = await conn.fetch(
            'SELECT * FROM buckets WHERE tenant_id = $1 ORDER BY name COLLATE "C"', tenant_id
        )
        return [_bucket(r) for r in rows]

    async def set_placement(
        self,
        conn: asyncpg.Connection,
        tenant_id: int,
        name: str,
        *,
        default_class: str | None,
        region_lock: tuple[str, ...],
    ) -> tuple[Bucket, Bucket]:
        """Set the bucket's default class and region lock; returns (before, after).

        The row is locked first, so a PUT committing at the same time (which reads the row
        ``FOR SHARE``) either commits before and is marked by the caller, or after and sees
        the new settings.
        """
        row = await conn.fetchrow(
            "SELECT * FROM buckets WHERE tenant_id = $1 AND name = $2 FOR UPDATE", tenant_id, name
        )
        if row is None:
            raise NoSuchBucket(f"bucket {name!r} does not exist")
        updated = await conn.fetchrow(
            "UPDATE buckets SET default_class = $2, region_lock = $3 WHERE id = $1 RETURNING *",
            row["id"],
            default_class,
            list(region_lock),
        )
        assert updated is not None
        return _bucket(row), _bucket(updated)

    async def set_versioning(
        self, conn: asyncpg.Connection, tenant_id: int, name: str, status: str
    ) -> tuple[Bucket, Bucket]:
        """Turn versioning on (``Enabled``) or suspend it (``Suspended``); returns (before,
        after). A bucket never goes back to ``Unversioned``. The row is locked like
        ``set_placement``, so a commit that reads the setting sees it wholly before or after."""
        if status not in ("Enabled", "Suspended"):
            raise ValueError(f"versioning status {status!r}")
        row = await conn.fetchrow(
            "SELECT * FROM buckets WHERE tenant_id = $1 AND name = $2 FOR UPDATE", tenant_id, name
        )
        if row is None:
            raise NoSuchBucket(f"bucket {name!r} does not exist")
        updated = await conn.fetchrow(
            "UPDATE buckets SET versioning = $2 WHERE id = $1 RETURNING *", row["id"], status
        )
        assert updated is not None
        return _bucket(row), _bucket(updated)

    async def delete(self, conn: asyncpg.Connection, tenant_id: int, name: str) -> Bucket:
        """Delete a bucket that holds no object version and no delete marker (noncurrent ones
        count, as in S3). Locks the row so a concurrent PUT cannot slip in. Multipart uploads
        still in progress are aborted with it, as S3 does: their parts' backend objects go to
        ``garbage`` in this transaction."""
        row = await conn.fetchrow(
            "SELECT * FROM buckets WHERE tenant_id = $1 AND name = $2 FOR UPDATE", tenant_id, name
        )
        if row is None:
            raise NoSuchBucket(f"bucket {name!r} does not exist")
        if await conn.fetchval(
            "SELECT 1 FROM object_versions WHERE bucket_id = $1 LIMIT 1", row["id"]
        ):
            raise BucketNotEmpty(f"bucket {name!r} is not empty")
        uploads = await conn.fetch(
            "SELECT id FROM uploads WHERE bucket_id = $1 ORDER BY id FOR UPDATE", row["id"]
        )
        for upload in uploads:
            await UploadRepository().abort(conn, upload["id"], "bucket deleted")
        await conn.execute("DELETE FROM buckets WHERE id = $1", row["id"])
        return _bucket(row)
