"""The backend registry as stored: endpoints, sealed credentials, location, state and health."""

from __future__ import annotations

import asyncpg

from core.errors import Conflict, NotFound
from schema.records import BackendRecord

__all__ = ["BackendRepository"]

_COLUMNS = (
    "id, name, kind, endpoint, bucket, path, sealed_credentials, region, country, jurisdiction,"
    " provider, state, healthy, rtt_ms, throughput_mbps, capacity_bytes, used_bytes, last_error"
)


def _backend(row: asyncpg.Record) -> BackendRecord:
    values = dict(row)
    if values["sealed_credentials"] is not None:
        values["sealed_credentials"] = bytes(values["sealed_credentials"])
    return BackendRecord(**values)


class BackendRepository:
    async def add(
        self,
        conn: asyncpg.Connection,
        *,
        name: str,
        kind: str,
        region: str,
        country: str,
        jurisdiction: str,
        provider: str,
        endpoint: str | None = None,
        bucket: str | None = None,
        path: str | None = None,
        sealed_credentials: bytes | None = None,
        capacity_bytes: int | None = None,
    ) -> BackendRecord:
        try:
            row = await conn.fetchrow(
                "INSERT INTO backends (name, kind, endpoint, bucket, path, sealed_credentials,"
                " region, country, jurisdiction, provider, capacity_bytes)"
                f" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {_COLUMNS}",
                name,
                kind,
                endpoint,
                bucket,
                path,
                sealed_credentials,
                region,
                country,
                jurisdiction,
                provider,
                capacity_bytes,
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"backend {name!r} already exists") from exc
        except asyncpg.CheckViolationError as exc:
            raise Conflict(f"invalid backend definition for {name!r}") from exc
        assert row is not None
        return _backend(row)

    async def list(
        self, conn: asyncpg.Connection, *, include_removed: bool = False
    ) -> list[BackendRecord]:
        where = "" if include_removed else " WHERE state <> 'removed'"
        rows = await conn.fetch(f"SELECT {_COLUMNS} FROM backends{where} ORDER BY name")
        return [_backend(r) for r in rows]

    async def get(self, conn: asyncpg.Connection, name: str) -> BackendRecord:
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM backends WHERE name = $1", name)
        if row is None:
            raise NotFound(f"no backend {name!r}")
        return _backend(row)

    async def record_health(
        self,
        conn: asyncpg.Connection,
        backend_id: int,
        *,
        healthy: bool,
        rtt_ms: float | None,
        error: str | None,
    ) -> None:
        await conn.execute(
            "UPDATE backends SET healthy = $2, rtt_ms = COALESCE($3, rtt_ms), last_error = $4,"
            " checked_at = now() WHERE id = $1",
            backend_id,
            healthy,
            rtt_ms,
            error,
        )

    async def refresh_used_bytes(self, conn: asyncpg.Connection) -> None:
        """Recompute usage from the replica rows (periodic, never on the write path: a per-PUT
        counter update would serialize every write on the backend rows)."""
        await conn.execute(
            "UPDATE backends b SET used_bytes = COALESCE((SELECT SUM(r.size) FROM replicas r"
            " WHERE r.backend_id = b.id AND r.status IN ('ok', 'pending')), 0)"
        )
