"""The backend registry as stored: how to reach each backend (credentials sealed), where it is,
what it is, which tenants it serves, its shared health, and its drain and removal.

Invariants kept here:

- A name is unique among backends not removed (a removed backend keeps its row for the
  history and gives its name back; ``backends_live_name``).
- A backend is removed only when no metadata row references it (``references``: replicas,
  uploaded parts, snapshot parts, garbage still to delete); removal forgets its sealed
  credentials and its tenant and orphan rows in the same statement group.
- ``record_health`` writes the recorder's ``core.health`` document and state together, and
  ``healthy`` = "not down" beside them, for readers that only ask whether to use it.

What it does not do: decide health (``core.health``), probe (``actors/backend_probe.py``) or
enqueue the moves of a drain (``schema/drains.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from core.errors import Conflict, InvalidInput, NotFound
from schema.db import jsonb_dict
from schema.records import BackendRecord

__all__ = ["BackendRepository", "BackendSettings"]

_COLUMNS = (
    "b.id, b.name, b.kind, b.endpoint, b.bucket, b.path, b.sealed_credentials, b.region,"
    " b.country, b.jurisdiction, b.provider, b.state, b.healthy, b.rtt_ms, b.throughput_mbps,"
    " b.capacity_bytes, b.used_bytes, b.last_error, b.backend_type, b.signing_region,"
    " b.addressing_style, b.manage_bucket, b.sla_availability, b.sla_latency_ms, b.residency,"
    " b.supports_sse, b.health_state, b.health, b.drain_started_at, b.node_label, b.archive,"
    " (SELECT array_agg(t.name ORDER BY t.name) FROM backend_tenants bt"
    "  JOIN tenants t ON t.id = bt.tenant_id WHERE bt.backend_id = b.id) AS tenants"
)

#: Columns ``update`` may set (what a PATCH can change); the rest name the bytes themselves.
BackendSettings = dict[str, Any]
_UPDATABLE = (
    "backend_type",
    "provider",
    "region",
    "country",
    "jurisdiction",
    "sealed_credentials",
    "signing_region",
    "addressing_style",
    "sla_availability",
    "sla_latency_ms",
    "residency",
    "supports_sse",
    "capacity_bytes",
)


def _backend(row: asyncpg.Record) -> BackendRecord:
    values = dict(row)
    if values["sealed_credentials"] is not None:
        values["sealed_credentials"] = bytes(values["sealed_credentials"])
    values["health"] = jsonb_dict(values["health"])
    tenants = values["tenants"]
    values["tenants"] = None if tenants is None else tuple(tenants)
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
        settings: BackendSettings | None = None,
        health: dict[str, Any] | None = None,
    ) -> BackendRecord:
        """Insert a backend; ``settings`` holds the other declared columns (``_UPDATABLE`` and
        ``manage_bucket``), ``health`` the first health document (the onboarding probe's)."""
        extra = dict(settings or {})
        unknown = set(extra) - {
            *_UPDATABLE,
            "manage_bucket",
            "rtt_ms",
            "throughput_mbps",
            "node_label",
            "archive",
        }
        if unknown:
            raise ValueError(f"not backend columns: {sorted(unknown)}")
        columns = [
            "name", "kind", "endpoint", "bucket", "path", "sealed_credentials", "region",
            "country", "jurisdiction", "provider", "capacity_bytes", *extra, "health",
        ]  # fmt: skip
        values: list[Any] = [
            name, kind, endpoint, bucket, path, sealed_credentials, region, country,
            jurisdiction, provider, capacity_bytes, *extra.values(), json.dumps(health or {}),
        ]  # fmt: skip
        placeholders = [f"${i}" for i in range(1, len(values))] + [f"(${len(values)}::text)::jsonb"]
        try:
            backend_id = await conn.fetchval(
                f"INSERT INTO backends ({', '.join(columns)}) VALUES ({', '.join(placeholders)})"
                " RETURNING id",
                *values,
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"backend {name!r} already exists") from exc
        except asyncpg.CheckViolationError as exc:
            raise Conflict(f"invalid backend definition for {name!r}") from exc
        return await self.get_by_id(conn, int(backend_id))

    async def list(
        self, conn: asyncpg.Connection, *, include_removed: bool = False
    ) -> list[BackendRecord]:
        where = "" if include_removed else " WHERE b.state <> 'removed'"
        rows = await conn.fetch(f"SELECT {_COLUMNS} FROM backends b{where} ORDER BY b.name, b.id")
        return [_backend(r) for r in rows]

    async def get(
        self, conn: asyncpg.Connection, name: str, *, lock: bool = False
    ) -> BackendRecord:
        """The backend of this name that is not removed; ``lock`` takes its row FOR UPDATE."""
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM backends b WHERE b.name = $1 AND b.state <> 'removed'"
            + (" FOR UPDATE OF b" if lock else ""),
            name,
        )
        if row is None:
            raise NotFound(f"no backend {name!r}")
        return _backend(row)

    async def get_by_id(self, conn: asyncpg.Connection, backend_id: int) -> BackendRecord:
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM backends b WHERE b.id = $1", backend_id)
        if row is None:
            raise NotFound(f"no backend {backend_id}")
        return _backend(row)

    async def update(
        self, conn: asyncpg.Connection, backend_id: int, changes: BackendSettings
    ) -> None:
        """Set the given updatable columns (a PATCH); the caller validated the values."""
        unknown = set(changes) - set(_UPDATABLE)
        if unknown:
            raise ValueError(f"not updatable backend columns: {sorted(unknown)}")
        if not changes:
            return
        sets = ", ".join(f"{column} = ${i}" for i, column in enumerate(changes, start=2))
        try:
            await conn.execute(
                f"UPDATE backends SET {sets} WHERE id = $1", backend_id, *changes.values()
            )
        except asyncpg.CheckViolationError as exc:
            raise InvalidInput(f"invalid backend settings: {exc.constraint_name}") from exc

    async def set_tenants(
        self, conn: asyncpg.Connection, backend_id: int, tenants: Sequence[str] | None
    ) -> None:
        """Which tenants the backend serves (None: every tenant); unknown names are refused."""
        await conn.execute("DELETE FROM backend_tenants WHERE backend_id = $1", backend_id)
        if tenants is None:
            return
        rows = await conn.fetch(
            "INSERT INTO backend_tenants (backend_id, tenant_id)"
            " SELECT $1, id FROM tenants WHERE name = ANY($2::text[]) RETURNING tenant_id",
            backend_id,
            list(tenants),
        )
        if len(rows) != len(set(tenants)):
            missing = await self.missing_tenants(conn, tenants)
            raise InvalidInput(f"field 'tenants': no tenant {missing[0]!r}")

    async def missing_tenants(
        self, conn: asyncpg.Connection, names: Sequence[str]
    ) -> tuple[str, ...]:
        """Which of ``names`` name no tenant (sorted)."""
        if not names:
            return ()
        known = {
            r["name"]
            for r in await conn.fetch(
                "SELECT name FROM tenants WHERE name = ANY($1::text[])", list(names)
            )
        }
        return tuple(sorted(set(names) - known))

    # -- health ---------------------------------------------------------------------------------
    async def record_health(
        self,
        conn: asyncpg.Connection,
        backend_id: int,
        *,
        healthy: bool,
        rtt_ms: float | None,
        error: str | None,
        state: str | None = None,
        health: dict[str, Any] | None = None,
        throughput_mbps: float | None = None,
    ) -> None:
        """One recorded probe: ``state`` and ``health`` from ``core.health.observe`` (the
        recorder's), or only ``healthy`` (then the state follows it: down or healthy)."""
        await conn.execute(
            "UPDATE backends SET healthy = $2, rtt_ms = COALESCE($3, rtt_ms), last_error = $4,"
            " health_state = COALESCE($5, CASE WHEN $2 THEN 'healthy' ELSE 'down' END),"
            " health = COALESCE(($6::text)::jsonb, health),"
            " throughput_mbps = COALESCE($7, throughput_mbps), checked_at = now() WHERE id = $1",
            backend_id,
            healthy,
            rtt_ms,
            error,
            state,
            None if health is None else json.dumps(health),
            throughput_mbps,
        )

    async def health_documents(
        self, conn: asyncpg.Connection, backend_ids: Sequence[int]
    ) -> dict[int, tuple[str, dict[str, Any]]]:
        """(state, health document) of each backend, rows locked FOR UPDATE (the recorder's
        read-modify-write: two recorders never interleave)."""
        rows = await conn.fetch(
            "SELECT id, health_state, health FROM backends WHERE id = ANY($1::bigint[])"
            " ORDER BY id FOR UPDATE",
            list(backend_ids),
        )
        return {r["id"]: (r["health_state"], jsonb_dict(r["health"])) for r in rows}

    async def refresh_used_bytes(self, conn: asyncpg.Connection) -> None:
        """Recompute usage from the replica rows (periodic, never on the write path: a per-PUT
        counter update would serialize every write on the backend rows)."""
        await conn.execute(
            "UPDATE backends b SET used_bytes = COALESCE((SELECT SUM(r.size) FROM replicas r"
            " WHERE r.backend_id = b.id AND r.status IN ('ok', 'pending')), 0)"
        )

    # -- drain and removal ------------------------------------------------------------------
    async def start_drain(self, conn: asyncpg.Connection, backend_id: int) -> bool:
        """Mark the backend draining (no new writes); False if it already was."""
        row = await conn.fetchval(
            "UPDATE backends SET state = 'draining', drain_started_at = now()"
            " WHERE id = $1 AND state = 'active' RETURNING id",
            backend_id,
        )
        return row is not None

    async def references(self, conn: asyncpg.Connection, backend_id: int) -> dict[str, int]:
        """What metadata still points at the backend, by table (zero counts left out)."""
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM replicas WHERE backend_id = $1) AS replicas,"
            " (SELECT count(*) FROM upload_pieces WHERE backend_id = $1) AS upload_pieces,"
            " (SELECT count(*) FROM snapshot_parts WHERE backend_id = $1) AS snapshot_parts,"
            " (SELECT count(*) FROM garbage WHERE backend_id = $1) AS garbage",
            backend_id,
        )
        assert row is not None
        return {name: int(count) for name, count in dict(row).items() if count}

    async def remove(self, conn: asyncpg.Connection, backend_id: int) -> None:
        """Forget the backend: state removed, sealed credentials dropped, its tenant and
        orphan rows deleted. The caller checked ``references`` in the same transaction."""
        await conn.execute("DELETE FROM backend_tenants WHERE backend_id = $1", backend_id)
        await conn.execute("DELETE FROM tenant_backends WHERE backend_id = $1", backend_id)
        await conn.execute("DELETE FROM orphan_sightings WHERE backend_id = $1", backend_id)
        await conn.execute(
            "UPDATE backends SET state = 'removed', removed_at = now(), sealed_credentials = NULL,"
            " healthy = FALSE, health_state = 'down' WHERE id = $1",
            backend_id,
        )
