"""How well each stored object is placed right now: the weakest part's count of good pieces.

Read-only aggregation over ``replicas`` (and ``parts`` for an erasure-coded layout), owning no
table. One query for the whole federation or one tenant, grouped by redundancy class, the
erasure layout a version was written with and its good-piece count, so the caller turns the
groups into states with the class definitions in force (``core.federation_state``) without
one row per object crossing the wire. Pieces are counted once per shard index (erasure) or
per backend (replication); only ``ok`` pieces count.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

__all__ = ["PlacementCensus", "PlacementGroup"]


@dataclass(frozen=True)
class PlacementGroup:
    redundancy_class: str
    k: int  # 0: replicated (no erasure layout recorded)
    m: int
    ok_pieces: int  # good pieces of the weakest part
    objects: int
    bytes: int


_QUERY = """
WITH per_part AS (
    SELECT r.version_pk, r.part_number,
           count(DISTINCT CASE WHEN r.status = 'ok'
                 THEN CASE WHEN r.shard_index >= 0 THEN r.shard_index ELSE r.backend_id END
                 END) AS ok
      FROM replicas r JOIN object_versions v ON v.id = r.version_pk
     WHERE NOT v.is_delete_marker AND r.status <> 'deleting'
       AND ($1::bigint IS NULL OR v.tenant_id = $1)
     GROUP BY r.version_pk, r.part_number
), per_version AS (
    SELECT version_pk, min(ok) AS ok FROM per_part GROUP BY version_pk
)
SELECT v.redundancy_class, COALESCE(p.k, 0) AS k, COALESCE(p.m, 0) AS m, pv.ok,
       count(*) AS objects, COALESCE(sum(v.size), 0)::bigint AS bytes
  FROM per_version pv
  JOIN object_versions v ON v.id = pv.version_pk
  LEFT JOIN LATERAL (SELECT k, m FROM parts WHERE parts.version_pk = v.id
                      ORDER BY part_number LIMIT 1) p ON TRUE
 GROUP BY v.redundancy_class, COALESCE(p.k, 0), COALESCE(p.m, 0), pv.ok
"""


class PlacementCensus:
    async def groups(
        self, conn: asyncpg.Connection, *, tenant_id: int | None = None
    ) -> list[PlacementGroup]:
        """Stored versions grouped by (class, erasure layout, good pieces of the weakest part);
        ``tenant_id`` limits it to one tenant's objects."""
        rows = await conn.fetch(_QUERY, tenant_id)
        return [
            PlacementGroup(
                redundancy_class=r["redundancy_class"],
                k=int(r["k"]),
                m=int(r["m"]),
                ok_pieces=int(r["ok"]),
                objects=int(r["objects"]),
                bytes=int(r["bytes"]),
            )
            for r in rows
        ]

    async def replica_states(self, conn: asyncpg.Connection) -> dict[str, int]:
        """Stored pieces (replicas, shards) in each state, all tenants."""
        rows = await conn.fetch("SELECT status, count(*) AS n FROM replicas GROUP BY status")
        return {r["status"]: int(r["n"]) for r in rows}
