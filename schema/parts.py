"""The parts of erasure-coded object versions: each part's length, SHA-256 and code (k, m).

A replicated part's checksum lives on each replica row (every replica is the whole part). An
erasure-coded part is stored only as shards, each with its own checksum on its replica row;
the part's own checksum is recorded here so the decoded bytes are verified too (invariant 3:
a decoder fed a wrong-but-well-sized shard would otherwise produce wrong bytes silently). The
rows are written in the version's commit transaction and deleted with the version (cascade).

k and m are recorded per part rather than looked up from the class: a later policy document may
redefine the class, and the shards on the backends keep the code they were written with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

__all__ = ["ErasurePart", "PartRepository"]


@dataclass(frozen=True)
class ErasurePart:
    """One erasure-coded part: ``size`` bytes with ``sha256``, coded as ``k`` + ``m`` shards."""

    part_number: int
    size: int
    sha256: bytes
    k: int
    m: int


class PartRepository:
    async def add(
        self, conn: asyncpg.Connection, version_pk: int, parts: Sequence[ErasurePart]
    ) -> None:
        """Record the parts of a version, in the transaction that commits it."""
        await conn.executemany(
            "INSERT INTO parts (version_pk, part_number, size, sha256, k, m)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            [(version_pk, p.part_number, p.size, p.sha256, p.k, p.m) for p in parts],
        )

    async def of_version(self, conn: asyncpg.Connection, version_pk: int) -> list[ErasurePart]:
        """The parts in order; empty for a replicated version."""
        rows = await conn.fetch(
            "SELECT part_number, size, sha256, k, m FROM parts WHERE version_pk = $1"
            " ORDER BY part_number",
            version_pk,
        )
        return [
            ErasurePart(
                part_number=r["part_number"],
                size=r["size"],
                sha256=bytes(r["sha256"]),
                k=r["k"],
                m=r["m"],
            )
            for r in rows
        ]
