"""Where a tenant's stored pieces are, by declared location: the facts behind a placement
proof (``gateway/s3/handlers/placement_proof.py``) and the compliance report
(``bulletproof compliance report``).

Read-only; it owns no table (replicas, versions and backends belong to their repositories).
Every tenant-wide query filters by ``object_versions.tenant_id``. Backends are returned with
their id and location only: names and endpoints never leave through these answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from core.placement_proof import PieceFacts

__all__ = ["JurisdictionHolding", "PlacementFactsRepository", "StoredVersion"]


@dataclass(frozen=True)
class JurisdictionHolding:
    """What a tenant holds in one jurisdiction: versions with an ``ok`` piece there, the
    bytes of those pieces, how many pieces, and the countries they are in."""

    jurisdiction: str
    objects: int
    bytes: int
    pieces: int
    countries: tuple[str, ...]


@dataclass(frozen=True)
class StoredVersion:
    """One stored version of a tenant (not a delete marker) and its ``ok`` pieces as
    (part, shard, backend id): what the "fully placed" rule needs."""

    version_pk: int
    bucket: str
    key: str
    version_id: str
    redundancy_class: str
    part_count: int
    size: int
    ok_pieces: tuple[tuple[int, int, int], ...]


class PlacementFactsRepository:
    async def pieces(self, conn: asyncpg.Connection, version_pk: int) -> list[PieceFacts]:
        """Every replica row of the version with its backend's declared location and state."""
        rows = await conn.fetch(
            "SELECT r.backend_id, r.part_number, r.shard_index, r.size, r.sha256, r.status,"
            " r.verified_at, b.region, b.country, b.jurisdiction, b.state AS holder_state"
            " FROM replicas r JOIN backends b ON b.id = r.backend_id"
            " WHERE r.version_pk = $1 ORDER BY r.part_number, r.shard_index, r.backend_id",
            version_pk,
        )
        return [
            PieceFacts(
                backend_id=r["backend_id"],
                part_number=r["part_number"],
                shard_index=r["shard_index"],
                size=r["size"],
                sha256=bytes(r["sha256"]),
                state=r["status"],
                region=r["region"],
                country=r["country"],
                jurisdiction=r["jurisdiction"],
                holder_state=r["holder_state"],
                verified_at=r["verified_at"],
            )
            for r in rows
        ]

    async def by_jurisdiction(
        self, conn: asyncpg.Connection, tenant_id: int
    ) -> list[JurisdictionHolding]:
        """The tenant's ``ok`` pieces summed per jurisdiction of their backends."""
        rows = await conn.fetch(
            "SELECT b.jurisdiction, count(DISTINCT r.version_pk) AS objects,"
            " COALESCE(sum(r.size), 0)::bigint AS bytes, count(*) AS pieces,"
            " array_agg(DISTINCT b.country ORDER BY b.country) AS countries"
            " FROM replicas r JOIN object_versions v ON v.id = r.version_pk"
            " JOIN backends b ON b.id = r.backend_id"
            " WHERE v.tenant_id = $1 AND r.status = 'ok' GROUP BY b.jurisdiction"
            " ORDER BY b.jurisdiction",
            tenant_id,
        )
        return [
            JurisdictionHolding(
                jurisdiction=r["jurisdiction"],
                objects=int(r["objects"]),
                bytes=int(r["bytes"]),
                pieces=int(r["pieces"]),
                countries=tuple(r["countries"]),
            )
            for r in rows
        ]

    async def stored_versions(
        self, conn: asyncpg.Connection, tenant_id: int, *, after_pk: int, limit: int
    ) -> list[StoredVersion]:
        """A page of the tenant's stored versions by primary key, each with its ``ok`` pieces."""
        versions = await conn.fetch(
            "SELECT v.id, k.name AS bucket, v.key, v.version_id, v.null_version,"
            " v.redundancy_class, v.part_count, v.size"
            " FROM object_versions v JOIN buckets k ON k.id = v.bucket_id"
            " WHERE v.tenant_id = $1 AND NOT v.is_delete_marker AND v.id > $2"
            " ORDER BY v.id LIMIT $3",
            tenant_id,
            after_pk,
            limit,
        )
        pks = [int(v["id"]) for v in versions]
        pieces: dict[int, list[tuple[int, int, int]]] = {pk: [] for pk in pks}
        if pks:
            rows = await conn.fetch(
                "SELECT version_pk, part_number, shard_index, backend_id FROM replicas"
                " WHERE version_pk = ANY($1::bigint[]) AND status = 'ok'",
                pks,
            )
            for r in rows:
                pieces[int(r["version_pk"])].append(
                    (r["part_number"], r["shard_index"], r["backend_id"])
                )
        return [_stored(v, pieces[int(v["id"])]) for v in versions]


def _stored(row: asyncpg.Record, ok: Sequence[tuple[int, int, int]]) -> StoredVersion:
    return StoredVersion(
        version_pk=int(row["id"]),
        bucket=row["bucket"],
        key=row["key"],
        version_id="null" if row["null_version"] else row["version_id"],
        redundancy_class=row["redundancy_class"],
        part_count=row["part_count"],
        size=row["size"],
        ok_pieces=tuple(ok),
    )
