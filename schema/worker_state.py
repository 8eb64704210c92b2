"""Progress and run leases of the periodic workers (the ``worker_state`` table).

Each worker has one row: a ``cursor`` (e.g. the last changelog sequence number it processed),
a free-form ``state`` document, the outcome of its last run, and a *run lease* (owner +
expiry, taken with one conditional upsert) so that two schedulers, or a scheduler and an
operator's ``bulletproof worker run``, never run the same worker at the same time. The lease
expires by itself if its holder dies; no advisory locks (CockroachDB has none).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

__all__ = ["WorkerStateRepository", "WorkerStatus"]


@dataclass(frozen=True)
class WorkerStatus:
    name: str
    cursor: int
    state: dict[str, Any]
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_started_at: datetime | None
    last_finished_at: datetime | None
    last_report: dict[str, Any] | None
    last_error: str | None


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _status(row: asyncpg.Record) -> WorkerStatus:
    return WorkerStatus(
        name=row["name"],
        cursor=row["cursor"],
        state=dict(_json(row["state"]) or {}),
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        last_started_at=row["last_started_at"],
        last_finished_at=row["last_finished_at"],
        last_report=_json(row["last_report"]),
        last_error=row["last_error"],
    )


class WorkerStateRepository:
    async def take_run_lease(
        self, conn: asyncpg.Connection, name: str, owner: str, *, lease_s: float
    ) -> bool:
        """Take (or renew) the run lease of ``name``; False while someone else holds it."""
        row = await conn.fetchval(
            "INSERT INTO worker_state (name, lease_owner, lease_expires_at, last_started_at)"
            " VALUES ($1, $2, now() + $3::float8 * interval '1 second', now())"
            " ON CONFLICT (name) DO UPDATE SET lease_owner = excluded.lease_owner,"
            " lease_expires_at = excluded.lease_expires_at, last_started_at = now(),"
            " updated_at = now()"
            " WHERE worker_state.lease_owner IS NULL OR worker_state.lease_owner = $2"
            " OR worker_state.lease_expires_at < now()"
            " RETURNING name",
            name,
            owner,
            lease_s,
        )
        return row is not None

    async def renew_run_lease(
        self, conn: asyncpg.Connection, name: str, owner: str, *, lease_s: float
    ) -> bool:
        row = await conn.fetchval(
            "UPDATE worker_state SET lease_expires_at = now() + $3::float8 * interval '1 second',"
            " updated_at = now() WHERE name = $1 AND lease_owner = $2 RETURNING name",
            name,
            owner,
            lease_s,
        )
        return row is not None

    async def finish_run(
        self,
        conn: asyncpg.Connection,
        name: str,
        owner: str,
        *,
        report: dict[str, Any] | None,
        error: str | None,
    ) -> None:
        """Release the lease and record how the run ended."""
        await conn.execute(
            "UPDATE worker_state SET lease_owner = NULL, lease_expires_at = NULL,"
            " last_finished_at = now(), last_report = $3, last_error = $4, updated_at = now()"
            " WHERE name = $1 AND lease_owner = $2",
            name,
            owner,
            report,
            error,
        )

    async def cursor(self, conn: asyncpg.Connection, name: str) -> int:
        value: int | None = await conn.fetchval(
            "SELECT cursor FROM worker_state WHERE name = $1", name
        )
        return value or 0

    async def set_cursor(self, conn: asyncpg.Connection, name: str, cursor: int) -> None:
        await conn.execute(
            "INSERT INTO worker_state (name, cursor) VALUES ($1, $2)"
            " ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor, updated_at = now()",
            name,
            cursor,
        )

    async def state(self, conn: asyncpg.Connection, name: str) -> dict[str, Any]:
        value = await conn.fetchval("SELECT state FROM worker_state WHERE name = $1", name)
        return dict(_json(value) or {})

    async def set_state(self, conn: asyncpg.Connection, name: str, state: dict[str, Any]) -> None:
        await conn.execute(
            "INSERT INTO worker_state (name, state) VALUES ($1, $2)"
            " ON CONFLICT (name) DO UPDATE SET state = excluded.state, updated_at = now()",
            name,
            state,
        )

    async def all(self, conn: asyncpg.Connection) -> list[WorkerStatus]:
        rows = await conn.fetch("SELECT * FROM worker_state ORDER BY name")
        return [_status(r) for r in rows]
