"""The ``changelog`` table: one row per change of a key's versions, in commit order.

A row is written in the transaction that makes the change (a put, a delete marker, a
deletion, a re-wrap), so the log never shows a change that did not commit. Incremental readers
page through it by ``seq`` (``since``) and keep their cursor themselves (the placement checker,
in ``schema/worker_state.py``). ``seq`` is taken when the row is inserted, not when its
transaction commits, so a reader is a fast path, not the only one: the placement checker's
full sweep finds what a cursor passed over. Rows are never updated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

__all__ = ["ChangelogRepository", "Change"]


@dataclass(frozen=True)
class Change:
    """One logged change: its sequence number, and the primary key of the version it names if
    that version still exists (None once it was dropped)."""

    seq: int
    version_pk: int | None


class ChangelogRepository:
    async def record(
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

    async def record_many(
        self,
        conn: asyncpg.Connection,
        changes: Sequence[tuple[int, int, str, str]],
        op: str,
    ) -> None:
        """:meth:`record` for many ``(tenant_id, bucket_id, key, version_id)`` in one
        statement, in order (a batch re-wrap's)."""
        if not changes:
            return
        tenants, buckets, keys, versions = (list(c) for c in zip(*changes, strict=True))
        await conn.execute(
            "INSERT INTO changelog (tenant_id, bucket_id, key, version_id, op)"
            " SELECT t, b, k, v, $5 FROM unnest($1::bigint[], $2::bigint[], $3::text[],"
            " $4::text[]) WITH ORDINALITY AS u(t, b, k, v, n) ORDER BY n",
            tenants,
            buckets,
            keys,
            versions,
            op,
        )

    async def since(self, conn: asyncpg.Connection, after_seq: int, limit: int) -> list[Change]:
        """Up to ``limit`` changes after ``after_seq``, in order."""
        rows = await conn.fetch(
            "SELECT c.seq, v.id FROM changelog c LEFT JOIN object_versions v"
            " ON v.bucket_id = c.bucket_id AND v.key = c.key"
            " AND v.version_id = c.version_id"
            " WHERE c.seq > $1 ORDER BY c.seq LIMIT $2",
            after_seq,
            limit,
        )
        return [Change(r["seq"], r["id"]) for r in rows]
