"""What one tenant may see of the federation's state, for the console's overview page: its
replicas by state, the bytes its replicas take on each backend, and the healing work queued
for its objects.

Every query filters by the tenant's id (``object_versions.tenant_id``), so another tenant's
objects are never counted; backends are reported by id (the caller decides which of them the
tenant may see). Read-only; it owns no table (replicas, versions and jobs belong to their own
repositories; this module only aggregates them for one tenant).
"""

from __future__ import annotations

import asyncpg

from schema.jobs import DATA_KINDS, JobKind

__all__ = ["TenantOverviewRepository"]

#: Jobs that heal or move a tenant's stored pieces: the repair queue the overview shows.
_HEALING_KINDS = [str(k) for k in (*DATA_KINDS, JobKind.PLACEMENT_CHECK)]


class TenantOverviewRepository:
    async def replica_states(self, conn: asyncpg.Connection, tenant_id: int) -> dict[str, int]:
        """How many replicas (or shards, or parts) of the tenant's versions are in each state."""
        rows = await conn.fetch(
            "SELECT r.status, count(*) AS n FROM replicas r"
            " JOIN object_versions v ON v.id = r.version_pk"
            " WHERE v.tenant_id = $1 GROUP BY r.status",
            tenant_id,
        )
        return {r["status"]: int(r["n"]) for r in rows}

    async def usage_by_backend(self, conn: asyncpg.Connection, tenant_id: int) -> dict[int, int]:
        """Bytes the tenant's live replicas take on each backend (by backend id)."""
        rows = await conn.fetch(
            "SELECT r.backend_id, COALESCE(sum(r.size), 0)::bigint AS bytes FROM replicas r"
            " JOIN object_versions v ON v.id = r.version_pk"
            " WHERE v.tenant_id = $1 AND r.status <> 'deleting' GROUP BY r.backend_id",
            tenant_id,
        )
        return {int(r["backend_id"]): int(r["bytes"]) for r in rows}

    async def healing_queue(self, conn: asyncpg.Connection, tenant_id: int) -> dict[str, int]:
        """Queued or running healing jobs (repair, replicate, move, ...) for the tenant's
        versions, by kind."""
        rows = await conn.fetch(
            "SELECT j.kind, count(*) AS n FROM jobs j"
            " JOIN object_versions v ON v.id = (j.payload->>'version_pk')::bigint"
            " WHERE j.status IN ('queued', 'leased') AND j.kind = ANY($2::text[])"
            " AND v.tenant_id = $1 GROUP BY j.kind",
            tenant_id,
            _HEALING_KINDS,
        )
        return {r["kind"]: int(r["n"]) for r in rows}
