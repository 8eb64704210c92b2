"""Replica rows after their version's commit: their states, and what self-healing changes.

``schema/versions.py`` writes a version's replica rows in its commit; this module holds every
later change to them and what the agents and workers read: a replica's status (found bad by a
reader or the scrubber, ``ok`` once a straggling write finished), replicas that need work,
versions short of their class, the scrubber's order, and the three ways a repair ends (rows
back to ``ok`` in place, a replica moved to another backend, a replica added). Each repair's
change is one statement set that the caller runs in the transaction that also completes the job
(fenced), so a repair is applied exactly once even when it ran twice. A replica moved away
hands its backend objects to ``garbage`` (``schema/garbage.py``) in that transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from schema.garbage import GarbageRepository

__all__ = [
    "NotOkReplica",
    "ReplicaRepository",
    "ScrubTarget",
    "ShortVersion",
]


@dataclass(frozen=True)
class NotOkReplica:
    id: int
    version_pk: int
    backend_id: int
    part_number: int
    shard_index: int
    status: str


@dataclass(frozen=True)
class ShortVersion:
    """A version whose replicas span fewer backends than its class asks for."""

    version_pk: int
    redundancy_class: str
    backends: int


@dataclass(frozen=True)
class ScrubTarget:
    replica_id: int
    version_pk: int
    bucket_id: int
    key: str
    backend_id: int
    locator: str
    part_number: int
    shard_index: int
    size: int
    sha256: bytes
    verified_at: datetime | None


_SCRUB_COLUMNS = (
    "SELECT r.id AS replica_id, r.version_pk, v.bucket_id, v.key, r.backend_id,"
    " r.locator, r.part_number, r.shard_index, r.size, r.sha256, r.verified_at"
    " FROM replicas r JOIN object_versions v ON v.id = r.version_pk"
)


def _target(row: asyncpg.Record) -> ScrubTarget:
    return ScrubTarget(**{**dict(row), "sha256": bytes(row["sha256"])})


class ReplicaRepository:
    def __init__(self) -> None:
        self._garbage = GarbageRepository()

    # -- states ------------------------------------------------------------------------------
    async def set_status(
        self, conn: asyncpg.Connection, replica_ids: Sequence[int], status: str
    ) -> int:
        """Set these replicas' status (``ok`` also stamps ``verified_at``), except rows being
        deleted; returns how many changed."""
        result = await conn.execute(
            "UPDATE replicas SET status = $2,"
            " verified_at = CASE WHEN $2 = 'ok' THEN now() ELSE verified_at END"
            " WHERE id = ANY($1::bigint[]) AND status <> 'deleting'",
            list(replica_ids),
            status,
        )
        return int(result.split()[-1])

    async def pending_done(
        self, conn: asyncpg.Connection, version_pk: int, backend_id: int
    ) -> None:
        """Every pending part of this version on this backend was acknowledged."""
        await conn.execute(
            "UPDATE replicas SET status = 'ok', verified_at = now()"
            " WHERE version_pk = $1 AND backend_id = $2 AND status = 'pending'",
            version_pk,
            backend_id,
        )

    # -- what needs work -------------------------------------------------------------------
    async def not_ok(
        self, conn: asyncpg.Connection, *, after_id: int, limit: int
    ) -> list[NotOkReplica]:
        """Replicas pending, corrupt or missing, by id (pages with ``after_id``)."""
        rows = await conn.fetch(
            "SELECT id, version_pk, backend_id, part_number, shard_index, status FROM replicas"
            " WHERE status IN ('pending', 'corrupt', 'missing') AND id > $1 ORDER BY id LIMIT $2",
            after_id,
            limit,
        )
        return [NotOkReplica(**dict(r)) for r in rows]

    async def pending_versions(
        self, conn: asyncpg.Connection, backend_id: int, *, limit: int = 10_000
    ) -> list[int]:
        """Versions with a part still ``pending`` on the backend (what it owes once it is back)."""
        rows = await conn.fetch(
            "SELECT DISTINCT version_pk FROM replicas WHERE backend_id = $1 AND status = 'pending'"
            " ORDER BY version_pk LIMIT $2",
            backend_id,
            limit,
        )
        return [int(r["version_pk"]) for r in rows]

    async def short_versions(
        self,
        conn: asyncpg.Connection,
        widths: dict[str, int],
        *,
        after_pk: int,
        limit: int,
    ) -> list[ShortVersion]:
        """Versions (not delete markers) of the classes in ``widths`` whose live replica rows
        (any status but 'deleting') span fewer distinct backends than the class's width."""
        names = sorted(widths)
        rows = await conn.fetch(
            "SELECT v.id, v.redundancy_class, count(DISTINCT r.backend_id) AS n"
            " FROM object_versions v"
            " JOIN unnest($1::text[], $2::int[]) AS c(name, width) ON c.name = v.redundancy_class"
            " LEFT JOIN replicas r ON r.version_pk = v.id AND r.status <> 'deleting'"
            " WHERE NOT v.is_delete_marker AND v.id > $3"
            " GROUP BY v.id, v.redundancy_class, c.width"
            " HAVING count(DISTINCT r.backend_id) < c.width ORDER BY v.id LIMIT $4",
            names,
            [widths[n] for n in names],
            after_pk,
            limit,
        )
        return [ShortVersion(r["id"], r["redundancy_class"], r["n"]) for r in rows]

    async def version_pks(
        self, conn: asyncpg.Connection, *, after_pk: int, limit: int
    ) -> list[int]:
        """Stored versions (not delete markers) by primary key, for full sweeps."""
        rows = await conn.fetch(
            "SELECT id FROM object_versions WHERE id > $1 AND NOT is_delete_marker"
            " ORDER BY id LIMIT $2",
            after_pk,
            limit,
        )
        return [r["id"] for r in rows]

    # -- the scrubber ---------------------------------------------------------------------
    async def least_recently_verified(
        self, conn: asyncpg.Connection, *, limit: int, backend_ids: Sequence[int]
    ) -> list[ScrubTarget]:
        """``ok`` replicas on these backends (the reachable ones: a backend that is down must
        not starve the others), never-verified first, then the oldest ``verified_at`` (two
        index-ordered queries: NULLS FIRST is not portable)."""
        base = (
            f"{_SCRUB_COLUMNS} WHERE r.status = 'ok' AND r.backend_id = ANY($2::bigint[])"
            " AND r.verified_at IS {} NULL ORDER BY r.verified_at, r.id LIMIT $1"
        )
        rows = list(await conn.fetch(base.format(""), limit, list(backend_ids)))
        if len(rows) < limit:
            rows += await conn.fetch(base.format("NOT"), limit - len(rows), list(backend_ids))
        return [_target(r) for r in rows]

    async def ok_on_backend(
        self,
        conn: asyncpg.Connection,
        backend_id: int,
        *,
        before: datetime,
        after_id: int,
        limit: int,
    ) -> list[ScrubTarget]:
        """``ok`` replicas on a backend committed before ``before`` (a listing that started
        then must contain them), by replica id."""
        rows = await conn.fetch(
            f"{_SCRUB_COLUMNS} WHERE r.backend_id = $1 AND r.status = 'ok'"
            " AND r.created_at < $2 AND r.id > $3 ORDER BY r.id LIMIT $4",
            backend_id,
            before,
            after_id,
            limit,
        )
        return [_target(r) for r in rows]

    async def touch_verified(self, conn: asyncpg.Connection, replica_ids: Sequence[int]) -> None:
        await conn.execute(
            "UPDATE replicas SET verified_at = now() WHERE id = ANY($1::bigint[])"
            " AND status = 'ok'",
            list(replica_ids),
        )

    async def replica_state(
        self, conn: asyncpg.Connection, version_pk: int, backend_id: int
    ) -> tuple[int, int, int] | None:
        """(parts of the version, its rows on the backend, those not ``ok``), or None if the
        version is gone: lets a repair that has nothing left to do finish without loading every
        row of a many-part version (a backend back empty queues one job per lost part)."""
        row = await conn.fetchrow(
            "SELECT v.part_count, count(r.id) AS n,"
            " coalesce(sum(CASE WHEN r.status <> 'ok' THEN 1 ELSE 0 END), 0) AS bad"
            " FROM object_versions v LEFT JOIN replicas r"
            " ON r.version_pk = v.id AND r.backend_id = $2"
            " WHERE v.id = $1 GROUP BY v.part_count",
            version_pk,
            backend_id,
        )
        if row is None:
            return None
        return int(row["part_count"]), int(row["n"]), int(row["bad"])

    # -- how a repair ends ------------------------------------------------------------------
    async def lock_version(self, conn: asyncpg.Connection, version_pk: int) -> bool:
        """Lock the version row for the rest of the transaction; False if it is gone."""
        found = await conn.fetchval(
            "SELECT id FROM object_versions WHERE id = $1 FOR UPDATE", version_pk
        )
        return found is not None

    async def mark_ok(
        self, conn: asyncpg.Connection, version_pk: int, backend_id: int, locators: Sequence[str]
    ) -> list[str]:
        """Rows of this version on this backend with these locators become ``ok`` (verified
        now); returns the locators whose row was found (the others were moved or dropped
        meanwhile)."""
        rows = await conn.fetch(
            "UPDATE replicas SET status = 'ok', verified_at = now()"
            " WHERE version_pk = $1 AND backend_id = $2 AND locator = ANY($3::text[])"
            " AND status IN ('pending', 'corrupt', 'missing', 'ok') RETURNING locator",
            version_pk,
            backend_id,
            list(locators),
        )
        return [r["locator"] for r in rows]

    async def holds(self, conn: asyncpg.Connection, version_pk: int, backend_id: int) -> bool:
        found = await conn.fetchval(
            "SELECT 1 FROM replicas WHERE version_pk = $1 AND backend_id = $2 LIMIT 1",
            version_pk,
            backend_id,
        )
        return found is not None

    async def add_verified(
        self,
        conn: asyncpg.Connection,
        version_pk: int,
        backend_id: int,
        rows: Sequence[tuple[int, int, str, int, bytes]],
    ) -> None:
        """Insert ``ok`` rows (part, shard, locator, size, sha256) for a new holder."""
        await conn.executemany(
            "INSERT INTO replicas (version_pk, backend_id, locator, part_number, shard_index,"
            " size, sha256, status, verified_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'ok', now())",
            [
                (version_pk, backend_id, locator, part, shard, size, sha)
                for part, shard, locator, size, sha in rows
            ],
        )

    async def drop_holder(
        self, conn: asyncpg.Connection, version_pk: int, backend_id: int, *, reason: str
    ) -> list[str]:
        """Delete this version's rows on ``backend_id``; their locators go to ``garbage``."""
        rows = await conn.fetch(
            "DELETE FROM replicas WHERE version_pk = $1 AND backend_id = $2 RETURNING locator",
            version_pk,
            backend_id,
        )
        locators = [r["locator"] for r in rows]
        if locators:
            await self._garbage.add_on(conn, backend_id, locators, reason)
        return locators
