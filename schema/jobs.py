"""The PostgreSQL job queue (outbox side): jobs are enqueued inside the metadata transaction
that implies them, so follow-up work is never lost (invariant 5).

Idempotency keys make enqueueing the same work twice a no-op. Leasing with
``FOR UPDATE SKIP LOCKED`` (no LISTEN/NOTIFY, no advisory locks: portable to CockroachDB).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

__all__ = ["Job", "JobQueue"]


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    lease_owner: str | None


def _job(row: asyncpg.Record) -> Job:
    payload = row["payload"]
    if isinstance(payload, str):
        payload = json.loads(payload)
    return Job(
        id=row["id"],
        kind=row["kind"],
        payload=payload,
        attempts=row["attempts"],
        lease_owner=row["lease_owner"],
    )


class JobQueue:
    async def enqueue(
        self,
        conn: asyncpg.Connection,
        kind: str,
        payload: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        priority: int = 100,
    ) -> int | None:
        """Enqueue; returns the job id, or None when the same key is already queued or running."""
        job_id: int | None = await conn.fetchval(
            "INSERT INTO jobs (kind, payload, idempotency_key, priority) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (idempotency_key) WHERE status IN ('queued', 'leased') DO NOTHING"
            " RETURNING id",
            kind,
            payload,
            idempotency_key,
            priority,
        )
        return job_id

    async def lease(
        self,
        conn: asyncpg.Connection,
        owner: str,
        *,
        kinds: tuple[str, ...],
        lease_s: float,
        limit: int = 1,
    ) -> list[Job]:
        rows = await conn.fetch(
            "UPDATE jobs SET status = 'leased', lease_owner = $1,"
            " lease_expires_at = now() + make_interval(secs => $2), attempts = attempts + 1,"
            " updated_at = now()"
            " WHERE id IN (SELECT id FROM jobs WHERE kind = ANY($3::text[]) AND run_after <= now()"
            "   AND (status = 'queued' OR (status = 'leased' AND lease_expires_at < now()))"
            "   ORDER BY priority, run_after, id LIMIT $4 FOR UPDATE SKIP LOCKED)"
            " RETURNING *",
            owner,
            lease_s,
            list(kinds),
            limit,
        )
        return [_job(r) for r in rows]

    async def complete(self, conn: asyncpg.Connection, job_id: int) -> None:
        await conn.execute(
            "UPDATE jobs SET status = 'done', lease_owner = NULL, lease_expires_at = NULL,"
            " updated_at = now() WHERE id = $1",
            job_id,
        )

    async def complete_by_key(self, conn: asyncpg.Connection, idempotency_key: str) -> None:
        await conn.execute(
            "UPDATE jobs SET status = 'done', lease_owner = NULL, lease_expires_at = NULL,"
            " updated_at = now() WHERE idempotency_key = $1 AND status <> 'done'",
            idempotency_key,
        )

    async def counts(self, conn: asyncpg.Connection) -> dict[tuple[str, str], int]:
        rows = await conn.fetch(
            "SELECT kind, status, count(*) AS n FROM jobs GROUP BY kind, status"
        )
        return {(r["kind"], r["status"]): r["n"] for r in rows}

    async def pending(self, conn: asyncpg.Connection, kind: str) -> list[Job]:
        rows = await conn.fetch(
            "SELECT * FROM jobs WHERE kind = $1 AND status IN ('queued', 'leased') ORDER BY id",
            kind,
        )
        return [_job(r) for r in rows]
