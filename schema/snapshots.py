"""Metadata snapshots and where their parts live (``snapshots``, ``snapshot_parts``).

A snapshot row is written in one transaction with its part rows, after every part is on its
backends; its locators are references, so the vacuumer keeps them. Dropping a snapshot moves
its locators to ``garbage`` in the same transaction (nothing is forgotten on a backend).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from schema.garbage import GarbageRepository

__all__ = [
    "NewSnapshot",
    "SnapshotPart",
    "SnapshotRecord",
    "SnapshotRepository",
]


@dataclass(frozen=True)
class SnapshotPart:
    backend_id: int
    part_number: int
    locator: str
    size: int
    sha256: bytes


@dataclass(frozen=True)
class NewSnapshot:
    name: str
    size: int
    sha256: bytes
    part_size: int
    part_count: int
    key_id: str
    wrap_alg: str
    pg_dump_version: str


@dataclass(frozen=True)
class SnapshotRecord:
    id: int
    name: str
    size: int
    sha256: bytes
    part_size: int
    part_count: int
    key_id: str
    wrap_alg: str
    pg_dump_version: str
    created_at: datetime
    parts: tuple[SnapshotPart, ...]


class SnapshotRepository:
    def __init__(self) -> None:
        self._garbage = GarbageRepository()

    async def add(
        self, conn: asyncpg.Connection, new: NewSnapshot, parts: Sequence[SnapshotPart]
    ) -> int:
        snapshot_id: int = await conn.fetchval(
            "INSERT INTO snapshots (name, size, sha256, part_size, part_count, key_id, wrap_alg,"
            " pg_dump_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            new.name,
            new.size,
            new.sha256,
            new.part_size,
            new.part_count,
            new.key_id,
            new.wrap_alg,
            new.pg_dump_version,
        )
        await conn.executemany(
            "INSERT INTO snapshot_parts (snapshot_id, backend_id, part_number, locator, size,"
            " sha256) VALUES ($1, $2, $3, $4, $5, $6)",
            [
                (snapshot_id, p.backend_id, p.part_number, p.locator, p.size, p.sha256)
                for p in parts
            ],
        )
        return snapshot_id

    async def _parts(self, conn: asyncpg.Connection, snapshot_id: int) -> tuple[SnapshotPart, ...]:
        rows = await conn.fetch(
            "SELECT * FROM snapshot_parts WHERE snapshot_id = $1 ORDER BY part_number, backend_id",
            snapshot_id,
        )
        return tuple(
            SnapshotPart(
                backend_id=r["backend_id"],
                part_number=r["part_number"],
                locator=r["locator"],
                size=r["size"],
                sha256=bytes(r["sha256"]),
            )
            for r in rows
        )

    async def _record(self, conn: asyncpg.Connection, row: asyncpg.Record) -> SnapshotRecord:
        return SnapshotRecord(
            id=row["id"],
            name=row["name"],
            size=row["size"],
            sha256=bytes(row["sha256"]),
            part_size=row["part_size"],
            part_count=row["part_count"],
            key_id=row["key_id"],
            wrap_alg=row["wrap_alg"],
            pg_dump_version=row["pg_dump_version"],
            created_at=row["created_at"],
            parts=await self._parts(conn, row["id"]),
        )

    async def get(self, conn: asyncpg.Connection, name_or_id: str) -> SnapshotRecord | None:
        """By name, or by numeric id."""
        if name_or_id.isascii() and name_or_id.isdigit():
            row = await conn.fetchrow("SELECT * FROM snapshots WHERE id = $1", int(name_or_id))
        else:
            row = await conn.fetchrow("SELECT * FROM snapshots WHERE name = $1", name_or_id)
        return None if row is None else await self._record(conn, row)

    async def newest_first(self, conn: asyncpg.Connection) -> list[SnapshotRecord]:
        rows = await conn.fetch("SELECT * FROM snapshots ORDER BY created_at DESC, id DESC")
        return [await self._record(conn, r) for r in rows]

    async def drop_older(self, conn: asyncpg.Connection, *, keep: int) -> list[str]:
        """Drop all but the ``keep`` newest snapshots; their locators go to ``garbage``."""
        rows = await conn.fetch(
            "SELECT id, name FROM snapshots ORDER BY created_at DESC, id DESC OFFSET $1", keep
        )
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        await self._garbage.add_snapshot_parts(conn, ids, "snapshot expired")
        await conn.execute("DELETE FROM snapshots WHERE id = ANY($1::bigint[])", ids)
        return [r["name"] for r in rows]
