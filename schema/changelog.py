"""The ``changelog`` table: one row per change of a key's versions, in commit order.

A row is written in the transaction that makes the change (a put, a delete marker, a
deletion, a re-wrap), so the log never shows a change that did not commit. Incremental readers
page through it by ``seq`` (``since``) and keep their cursor themselves (the placement checker,
in ``schema/worker_state.py``). ``seq`` is taken when the row is inserted, not when its
transaction commits, so a reader is a fast path, not the only one: the placement checker's
full sweep finds what a cursor passed over. Rows are never updated.
"""

from __future__ import annotations

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
