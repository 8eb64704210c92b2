"""The ``garbage`` table: the outbox of backend deletions, and what keeps a backend object alive.

Every write to ``garbage`` is here. A row is added in the transaction that drops the last
metadata reference to a backend object (a version dropped or deleted, a replica moved away, a
multipart part replaced or discarded, a snapshot expired, an orphan ripe after its grace
period) or by a write that failed before its commit; ``(backend_id, locator)`` is unique, so
queueing an object twice is a no-op. A row is forgotten only after its backend confirmed the
delete (``actors/garbage.py``), so a crash loses nothing.

The reference rule, which the collector re-checks before each delete (``referenced``): a
locator that a replica row (of any version: a CopyObject shares its source's backend objects)
or a multipart upload's piece names is never deleted; the collector forgets the row and keeps
the object, and the last holder to let go queues it again. The vacuumer's orphan test
(``unreferenced_sql``) is wider: an object named by a garbage row (already on its way out) or a
snapshot part is not an orphan either. A snapshot part reaches ``garbage`` only when its
snapshot row is dropped in the same transaction, so the collector need not ask about them.

Statements that must stay one (a CTE that deletes the referencing rows and queues what they
named, ``schema/uploads.py``) take their INSERT from ``queue_sql``; no other module spells
this table in SQL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import asyncpg

__all__ = ["LATEST_MANIFEST_LOCATOR", "GarbageRepository", "queue_sql", "unreferenced_sql"]


#: Where each snapshot's backends also hold the newest manifest: one fixed name, found without
#: the database (``bulletproof restore backend:...``), overwritten by every snapshot, never an
#: orphan to the vacuumer (``schema.garbage.unreferenced_sql``). A locator like any other
#: (derived from a constant, nothing from a tenant's names).
_MANIFEST_DIGEST = hashlib.sha256(b"bulletproof:snapshot-manifest:latest").hexdigest()
LATEST_MANIFEST_LOCATOR = f"{_MANIFEST_DIGEST[:2]}/{_MANIFEST_DIGEST[:32]}"


def queue_sql(rows: str) -> str:
    """The INSERT that queues the ``(backend_id, locator, reason)`` rows of the ``rows`` query
    (a ``SELECT`` or ``VALUES``), skipping objects already queued; for a CTE, add
    ``RETURNING``."""
    return (
        "INSERT INTO garbage (backend_id, locator, reason) "
        + rows
        + " ON CONFLICT (backend_id, locator) DO NOTHING"
    )


def unreferenced_sql(backend: str, locator: str) -> str:
    """An SQL condition: nothing references the object ``locator`` on ``backend`` (SQL
    expressions, e.g. ``$1`` and ``c.locator``): no replica row, garbage row, snapshot part or
    upload piece names it (the vacuumer's orphan test)."""
    b, loc = backend, locator
    return (
        f" {loc} <> '{LATEST_MANIFEST_LOCATOR}'"  # the newest snapshot manifest, a fixed name
        f" AND NOT EXISTS (SELECT 1 FROM replicas r WHERE r.backend_id = {b}"
        f" AND r.locator = {loc})"
        f" AND NOT EXISTS (SELECT 1 FROM garbage g WHERE g.backend_id = {b}"
        f" AND g.locator = {loc})"
        f" AND NOT EXISTS (SELECT 1 FROM snapshot_parts p WHERE p.backend_id = {b}"
        f" AND p.locator = {loc})"
        f" AND NOT EXISTS (SELECT 1 FROM upload_pieces u WHERE u.backend_id = {b}"
        f" AND u.locator = {loc})"
    )


class GarbageRepository:
    # -- queueing (in the transaction that drops the reference) -----------------------------
    async def add(
        self, conn: asyncpg.Connection, items: Sequence[tuple[int, str]], reason: str
    ) -> None:
        """Queue these (backend id, locator) pairs."""
        await conn.executemany(
            queue_sql("VALUES ($1, $2, $3)"), [(b, loc, reason) for b, loc in items]
        )

    async def add_on(
        self, conn: asyncpg.Connection, backend_id: int, locators: Sequence[str], reason: str
    ) -> None:
        """Queue these locators of one backend (one statement)."""
        await conn.execute(
            queue_sql("SELECT $1, c.locator, $3 FROM unnest($2::text[]) AS c(locator)"),
            backend_id,
            list(locators),
            reason,
        )

    async def add_replicas_of(self, conn: asyncpg.Connection, version_pk: int, reason: str) -> None:
        """Queue every backend object a version's replica rows name (before the rows go)."""
        await conn.execute(
            queue_sql("SELECT backend_id, locator, $2 FROM replicas WHERE version_pk = $1"),
            version_pk,
            reason,
        )

    async def add_snapshot_parts(
        self, conn: asyncpg.Connection, snapshot_ids: Sequence[int], reason: str
    ) -> None:
        """Queue every part of these snapshots (before their rows go)."""
        await conn.execute(
            queue_sql(
                "SELECT backend_id, locator, $2 FROM snapshot_parts"
                " WHERE snapshot_id = ANY($1::bigint[])"
            ),
            list(snapshot_ids),
            reason,
        )

    async def add_unreferenced(
        self, conn: asyncpg.Connection, backend_id: int, locators: Sequence[str], reason: str
    ) -> list[str]:
        """Queue those of these locators that nothing references (``unreferenced_sql``);
        returns the locators queued now."""
        rows = await conn.fetch(
            queue_sql(
                "SELECT $1, c.locator, $3 FROM unnest($2::text[]) AS c(locator) WHERE"
                + unreferenced_sql("$1", "c.locator")
            )
            + " RETURNING locator",
            backend_id,
            list(locators),
            reason,
        )
        return [r["locator"] for r in rows]

    # -- the collector -----------------------------------------------------------------------
    async def take(self, conn: asyncpg.Connection, limit: int) -> list[tuple[int, int, str]]:
        """(garbage id, backend id, locator) of the oldest rows, skipping rows another
        collector holds."""
        rows = await conn.fetch(
            "SELECT id, backend_id, locator FROM garbage ORDER BY id LIMIT $1"
            " FOR UPDATE SKIP LOCKED",
            limit,
        )
        return [(r["id"], r["backend_id"], r["locator"]) for r in rows]

    async def take_on(
        self, conn: asyncpg.Connection, backend_ids: Sequence[int], limit: int
    ) -> list[tuple[int, int, str]]:
        """(garbage id, backend id, locator) of garbage rows on these backends only, so rows of
        an unreachable backend do not fill every batch."""
        rows = await conn.fetch(
            "SELECT id, backend_id, locator FROM garbage WHERE backend_id = ANY($1::bigint[])"
            " ORDER BY id LIMIT $2",
            list(backend_ids),
            limit,
        )
        return [(r["id"], r["backend_id"], r["locator"]) for r in rows]

    async def forget(self, conn: asyncpg.Connection, garbage_ids: Sequence[int]) -> None:
        """Drop rows whose object is deleted (or still referenced, see the module doc)."""
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
