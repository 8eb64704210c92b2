"""Orphaned backend objects: what a backend lists that no metadata row references.

A crash between a write's backend puts and its metadata commit (gateway, agent, snapshotter)
leaves objects that no row names. The vacuumer lists each backend and records every
unreferenced locator here with the time *we* first saw it (a backend's LastModified is not
trusted: backends are untrusted and their clocks are theirs). A sighting older than the grace
period whose object is *still* unreferenced moves to ``garbage``, in one transaction, and the
garbage collector deletes it (re-checking the replica reference once more).

"Referenced" means named by a replica row (any status), a garbage row (already on its way
out), a snapshot part or an upload piece (``schema.garbage.unreferenced_sql``, beside the
collector's own reference rule). The grace period must exceed the longest write in flight: a
write puts its parts before it commits, and until the commit its objects look exactly like
orphans.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from schema.garbage import GarbageRepository, unreferenced_sql

__all__ = ["OrphanRepository"]


class OrphanRepository:
    def __init__(self) -> None:
        self._garbage = GarbageRepository()

    async def unreferenced(
        self, conn: asyncpg.Connection, backend_id: int, locators: Sequence[str]
    ) -> list[str]:
        """The locators of ``locators`` on this backend that nothing references."""
        if not locators:
            return []
        rows = await conn.fetch(
            "SELECT c.locator FROM unnest($2::text[]) AS c(locator) WHERE"
            + unreferenced_sql("$1", "c.locator"),
            backend_id,
            list(locators),
        )
        return [r["locator"] for r in rows]

    async def sight(
        self, conn: asyncpg.Connection, backend_id: int, locators: Sequence[str]
    ) -> None:
        """Record (or refresh ``last_seen`` of) sightings; ``first_seen`` never moves."""
        if not locators:
            return
        await conn.execute(
            "INSERT INTO orphan_sightings (backend_id, locator)"
            " SELECT $1, c.locator FROM unnest($2::text[]) AS c(locator)"
            " ON CONFLICT (backend_id, locator) DO UPDATE SET last_seen = now()",
            backend_id,
            list(locators),
        )

    async def forget_unseen(
        self, conn: asyncpg.Connection, backend_id: int, *, listed_since: object
    ) -> int:
        """Drop sightings a complete listing that started at ``listed_since`` did not renew
        (the object is gone, or it became referenced)."""
        result = await conn.execute(
            "DELETE FROM orphan_sightings WHERE backend_id = $1 AND last_seen < $2",
            backend_id,
            listed_since,
        )
        return int(result.split()[-1])

    async def promote(
        self, conn: asyncpg.Connection, backend_id: int, *, grace_s: float
    ) -> list[str]:
        """Move ripe sightings (older than ``grace_s``, still unreferenced) into ``garbage``;
        run it in a transaction. Returns the locators handed to the garbage collector."""
        ripe = await conn.fetch(
            "DELETE FROM orphan_sightings s WHERE s.backend_id = $1"
            " AND s.first_seen <= now() - $2::float8 * interval '1 second' RETURNING s.locator",
            backend_id,
            grace_s,
        )
        if not ripe:
            return []
        return await self._garbage.add_unreferenced(
            conn, backend_id, [r["locator"] for r in ripe], "orphan"
        )

    async def count(self, conn: asyncpg.Connection) -> int:
        value: int = await conn.fetchval("SELECT count(*) FROM orphan_sightings")
        return value
