"""The PostgreSQL job queue: the only module that queries the ``jobs`` table.

Jobs are enqueued inside the metadata transaction that implies them (the transactional outbox
of invariant 5), so follow-up work is never lost. The queue then guarantees:

- **At-least-once, fenced.** ``lease`` hands a job to one owner for ``lease_s`` seconds with
  ``FOR UPDATE SKIP LOCKED`` (concurrent leasers never block on or double-take a row). The
  owner renews the lease by ``heartbeat``. If it dies, the lease expires and another owner
  leases the job again. Every lease increments ``attempts``, and (owner, attempts) is the
  fencing token: ``complete``, ``fail``, ``defer`` and ``heartbeat`` change the row only while
  the caller still holds *that* lease, and report whether they did. A caller completes a job in
  the same transaction as the job's effect, so an owner whose lease was taken over rolls its
  effect back instead of committing it twice.
- **Retries with backoff.** ``fail`` puts the job back with ``run_after`` pushed by an
  exponential delay with jitter (``backoff_delay``), or moves it to the dead letter
  (``status = 'dead'`` with ``last_error``) once ``max_attempts`` leases were used. A lease that
  expires on its last attempt is dead-lettered the same way (a job that kills its agents cannot
  loop forever). ``defer`` gives a job back without spending an attempt (the work could not
  start, e.g. its target backend is down).
- **Priorities.** Lower ``priority`` first, then older ``run_after``, then id.
- **Idempotency.** An ``idempotency_key`` is unique among queued and leased jobs: enqueueing
  the same work again while it is pending is a no-op; once it is done or dead the same key can
  be enqueued again (a replica can go bad twice).

The kinds of job, their idempotency keys and their priorities are defined here and nowhere
else (``JobKind``, the ``*_key`` functions, ``PRIORITY``); the keys are part of the contract,
since whoever enqueues the same work again must spell the same key:

===============  ==========================================  =================================
kind             payload                                     key
===============  ==========================================  =================================
replicate        version_pk, target_backend_id, ...          ``replicate:<pk>:<backend>``
repair           version_pk, backend_id, part_number, ...    ``repair:<pk>:<backend>:<part>``
move             version_pk, backend_id, reason              ``move:<pk>:<backend>``
add_replica      version_pk, reason                          ``add_replica:<pk>``
placement_check  version_pk, reason                          ``placement_check:<pk>``
import_copy      run_id, keys (a batch of one import run's)  ``import_copy:<run>:<sha1 key1>``
===============  ==========================================  =================================

``import_copy`` jobs are run only by an import's own workers (they hold the run's source
credentials in memory): they lease with ``match={"run_id": N}``, and replication agents never
lease this kind (it is not in ``DATA_KINDS``).

Portable to CockroachDB: plain UPDATE/INSERT, ``SKIP LOCKED``, no LISTEN/NOTIFY, no advisory
locks; intervals are written ``$n * interval '1 second'``.

What it does not do: know what a job does (``actors/replication_agent.py`` and the workers
do), or sleep: pollers choose their own idle interval.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import asyncpg

from core.request_context import current_request_id

__all__ = [
    "ACTIVE_STATES",
    "BLOCKED_PREFIX",
    "DATA_KINDS",
    "MAX_ERROR_CHARS",
    "PRIORITY",
    "Backoff",
    "Job",
    "JobKind",
    "JobQueue",
    "QueueSummary",
    "add_replica_key",
    "backoff_delay",
    "import_copy_key",
    "move_key",
    "placement_check_key",
    "repair_key",
    "replicate_key",
]


class JobKind(StrEnum):
    """What a job asks for (the ``kind`` column: stored, so a value never changes)."""

    #: Copy a version's parts to a backend its write left pending.
    REPLICATE = "replicate"
    #: Rewrite a replica found corrupt or missing.
    REPAIR = "repair"
    #: Move a replica off a backend where the placement rules no longer allow it.
    MOVE = "move"
    #: Add a replica to a version short of its class's width.
    ADD_REPLICA = "add_replica"
    #: Check a version's placement after the rules that place it changed.
    PLACEMENT_CHECK = "placement_check"
    #: Copy a batch of an import run's source objects into the federation.
    IMPORT_COPY = "import_copy"


#: The kinds replication agents run: each copies bytes between backends.
DATA_KINDS: Final[tuple[JobKind, ...]] = (
    JobKind.REPAIR,
    JobKind.REPLICATE,
    JobKind.MOVE,
    JobKind.ADD_REPLICA,
)

#: Priorities (lower first): a bad replica is a lost copy, a pending one was never made, a move
#: or an extra copy keeps a durable object compliant, and a placement check comes last (a
#: misplaced object is still durable).
PRIORITY: Final[Mapping[JobKind, int]] = {
    JobKind.REPAIR: 50,
    JobKind.REPLICATE: 100,
    JobKind.ADD_REPLICA: 100,
    JobKind.MOVE: 120,
    JobKind.PLACEMENT_CHECK: 150,
    JobKind.IMPORT_COPY: 200,
}


def replicate_key(version_pk: int, backend_id: int) -> str:
    return f"{JobKind.REPLICATE}:{version_pk}:{backend_id}"


def repair_key(version_pk: int, backend_id: int, part_number: int) -> str:
    return f"{JobKind.REPAIR}:{version_pk}:{backend_id}:{part_number}"


def move_key(version_pk: int, backend_id: int) -> str:
    return f"{JobKind.MOVE}:{version_pk}:{backend_id}"


def add_replica_key(version_pk: int) -> str:
    return f"{JobKind.ADD_REPLICA}:{version_pk}"


def placement_check_key(version_pk: int) -> str:
    return f"{JobKind.PLACEMENT_CHECK}:{version_pk}"


def import_copy_key(run_id: int, first_key: str) -> str:
    """One batch of a run, named by its first source key (hashed: keys may be 1 KiB long)."""
    digest = hashlib.sha1(first_key.encode("utf-8"), usedforsecurity=False).hexdigest()
    return f"{JobKind.IMPORT_COPY}:{run_id}:{digest}"


#: How a deferred job says the policy forbids it for now (no compliant target exists): a drain
#: lists these as blocked objects with the rule (the rest of ``last_error``).
BLOCKED_PREFIX: Final = "blocked: "

#: States in which an idempotency key is taken.
ACTIVE_STATES = ("queued", "leased")
#: ``last_error`` is cut to this many characters (an error text is a hint, not a log).
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class QueueSummary:
    """One job kind's queue: what waits, what runs, what died, the oldest ready job's age."""

    kind: str
    queued: int
    leased: int
    dead: int
    oldest_ready_s: float


@dataclass(frozen=True)
class Job:
    """One job as leased or listed. ``attempts`` counts leases, this one included."""

    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    lease_owner: str | None
    status: str = "leased"
    priority: int = 100
    max_attempts: int = 10
    idempotency_key: str | None = None
    last_error: str | None = None
    run_after: datetime | None = None
    lease_expires_at: datetime | None = None


@dataclass(frozen=True)
class Backoff:
    """Retry delays: ``base_s * 2 ** (attempt - 1)``, capped at ``max_s``, with jitter."""

    base_s: float = 2.0
    max_s: float = 600.0


def backoff_delay(attempt: int, backoff: Backoff, rng: random.Random | None = None) -> float:
    """Seconds to wait before the retry after failed attempt ``attempt`` (1-based).

    "Equal jitter": half the exponential delay is fixed, half is random, so retries of jobs that
    failed together spread out, yet a retry never comes sooner than half its step.
    """
    step = min(backoff.max_s, backoff.base_s * 2.0 ** max(0, min(attempt - 1, 62)))
    return step / 2 + (rng or random).uniform(0.0, step / 2)


def _traced(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with the request id it was enqueued under (``core.request_context``), so
    the agent that runs the job logs under the same id; unchanged outside a request."""
    request_id = current_request_id()
    if request_id is None or "request_id" in payload:
        return payload
    return {**payload, "request_id": request_id}


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
        status=row["status"],
        priority=row["priority"],
        max_attempts=row["max_attempts"],
        idempotency_key=row["idempotency_key"],
        last_error=row["last_error"],
        run_after=row["run_after"],
        lease_expires_at=row["lease_expires_at"],
    )


def _error_text(error: str) -> str:
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 3] + "..."


_FENCE = "id = $1 AND status = 'leased' AND lease_owner = $2 AND attempts = $3"


class JobQueue:
    # -- producers -------------------------------------------------------------------------
    async def enqueue(
        self,
        conn: asyncpg.Connection,
        kind: str,
        payload: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        priority: int = 100,
        max_attempts: int = 10,
        delay_s: float = 0.0,
    ) -> int | None:
        """Enqueue; returns the job id, or None when the same key is already queued or running."""
        job_id: int | None = await conn.fetchval(
            "INSERT INTO jobs (kind, payload, idempotency_key, priority, max_attempts, run_after)"
            " VALUES ($1, $2, $3, $4, $5, now() + $6::float8 * interval '1 second')"
            " ON CONFLICT (idempotency_key) WHERE status IN ('queued', 'leased') DO NOTHING"
            " RETURNING id",
            kind,
            _traced(payload),
            idempotency_key,
            priority,
            max_attempts,
            delay_s,
        )
        return job_id

    async def enqueue_many(
        self,
        conn: asyncpg.Connection,
        kind: str,
        payloads_with_keys: Sequence[tuple[dict[str, Any], str | None]],
        *,
        priority: int = 100,
        max_attempts: int = 10,
    ) -> list[int]:
        """Enqueue a batch in ONE statement (one round trip however many jobs: an import of
        millions of objects must not cost millions). Each (payload, idempotency key) behaves as
        ``enqueue`` would: a key already queued or running, or repeated within the batch, is a
        no-op. Returns the ids of the jobs actually added."""
        if not payloads_with_keys:
            return []
        rows = await conn.fetch(
            "INSERT INTO jobs (kind, payload, idempotency_key, priority, max_attempts)"
            " SELECT $1, u.payload::jsonb, u.key, $4, $5"
            " FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS u(payload, key, n)"
            " ORDER BY u.n"
            " ON CONFLICT (idempotency_key) WHERE status IN ('queued', 'leased') DO NOTHING"
            " RETURNING id",
            kind,
            [json.dumps(_traced(payload)) for payload, _ in payloads_with_keys],
            [key for _, key in payloads_with_keys],
            priority,
            max_attempts,
        )
        return sorted(r["id"] for r in rows)

    # -- consumers -------------------------------------------------------------------------
    async def lease(
        self,
        conn: asyncpg.Connection,
        owner: str,
        *,
        kinds: tuple[str, ...],
        lease_s: float,
        limit: int = 1,
        reap: bool = True,
        match: Mapping[str, Any] | None = None,
    ) -> list[Job]:
        """Lease up to ``limit`` ready jobs of ``kinds`` (queued, or leased with an expired
        lease) for ``lease_s`` seconds. Expired leases on their last attempt are dead-lettered
        first (``reap``; a busy poller may do that only now and then). ``match``: only jobs
        whose payload contains these fields (an import's workers take their run's jobs only).
        Run it outside an explicit transaction (each statement commits on its own)."""
        if reap:
            await self.reap(conn, kinds)
        rows = await conn.fetch(
            "UPDATE jobs SET status = 'leased', lease_owner = $1,"
            " lease_expires_at = now() + $2::float8 * interval '1 second',"
            " attempts = attempts + 1, updated_at = now()"
            " WHERE id IN (SELECT id FROM jobs WHERE kind = ANY($3::text[]) AND run_after <= now()"
            "   AND (status = 'queued' OR (status = 'leased' AND lease_expires_at < now()))"
            "   AND ($5::text IS NULL OR payload @> ($5::text)::jsonb)"
            "   ORDER BY priority, run_after, id LIMIT $4 FOR UPDATE SKIP LOCKED)"
            " RETURNING *",
            owner,
            lease_s,
            list(kinds),
            limit,
            None if match is None else json.dumps(dict(match)),
        )
        jobs = [_job(r) for r in rows]
        jobs.sort(key=lambda j: (j.priority, j.run_after or datetime.min, j.id))
        return jobs

    async def reap(self, conn: asyncpg.Connection, kinds: Sequence[str]) -> int:
        """Dead-letter jobs of ``kinds`` whose lease expired on their last attempt."""
        result = await conn.execute(
            "UPDATE jobs SET status = 'dead', lease_owner = NULL, lease_expires_at = NULL,"
            " finished_at = now(), updated_at = now(),"
            " last_error = 'lease expired on attempt ' || attempts || ' of ' || max_attempts"
            "   || COALESCE(' (last error: ' || last_error || ')', '')"
            " WHERE status = 'leased' AND lease_expires_at < now() AND attempts >= max_attempts"
            " AND kind = ANY($1::text[])",
            list(kinds),
        )
        return int(result.split()[-1])

    async def heartbeat(
        self, conn: asyncpg.Connection, job: Job, owner: str, *, lease_s: float
    ) -> bool:
        """Extend the lease; False if it is no longer ours (expired and taken, or finished)."""
        row = await conn.fetchval(
            f"UPDATE jobs SET lease_expires_at = now() + $4::float8 * interval '1 second',"
            f" updated_at = now() WHERE {_FENCE} RETURNING id",
            job.id,
            owner,
            job.attempts,
            lease_s,
        )
        return row is not None

    async def complete(
        self, conn: asyncpg.Connection, job: Job | int, owner: str | None = None
    ) -> bool:
        """Mark done. With ``owner`` (and a leased ``Job``) only while that lease is held;
        run it in the transaction that applies the job's effect and roll back on False."""
        if owner is None:
            job_id = job if isinstance(job, int) else job.id
            result = await conn.execute(
                "UPDATE jobs SET status = 'done', lease_owner = NULL, lease_expires_at = NULL,"
                " finished_at = now(), updated_at = now()"
                " WHERE id = $1 AND status IN ('queued', 'leased')",
                job_id,
            )
            return result != "UPDATE 0"
        assert isinstance(job, Job), "a fenced complete needs the leased Job"
        row = await conn.fetchval(
            "UPDATE jobs SET status = 'done', lease_owner = NULL, lease_expires_at = NULL,"
            f" finished_at = now(), updated_at = now() WHERE {_FENCE} RETURNING id",
            job.id,
            owner,
            job.attempts,
        )
        return row is not None

    async def supersede(self, conn: asyncpg.Connection, version_pk: int) -> None:
        """The version is being dropped: its queued and leased jobs are done (nothing left to
        copy, repair or move); a holder's fenced complete then fails."""
        await conn.execute(
            "UPDATE jobs SET status = 'done', last_error = 'version superseded', updated_at = now()"
            " WHERE status IN ('queued', 'leased') AND (payload->>'version_pk')::bigint = $1",
            version_pk,
        )

    async def complete_by_key(self, conn: asyncpg.Connection, idempotency_key: str) -> None:
        """Mark the active job with this key done (the work was finished by someone else,
        e.g. the write path's straggler finisher); its holder's fenced complete then fails."""
        await conn.execute(
            "UPDATE jobs SET status = 'done', lease_owner = NULL, lease_expires_at = NULL,"
            " finished_at = now(), updated_at = now()"
            " WHERE idempotency_key = $1 AND status IN ('queued', 'leased')",
            idempotency_key,
        )

    async def fail(
        self,
        conn: asyncpg.Connection,
        job: Job,
        owner: str,
        error: str,
        *,
        backoff: Backoff = Backoff(),
        permanent: bool = False,
        rng: random.Random | None = None,
    ) -> str | None:
        """Record a failed attempt: back to 'queued' after a backoff delay, or 'dead' when the
        attempts are used up or ``permanent``. Returns the new status, None if the lease was
        no longer ours (nothing changed)."""
        dead = permanent or job.attempts >= job.max_attempts
        delay = 0.0 if dead else backoff_delay(job.attempts, backoff, rng)
        status: str | None = await conn.fetchval(
            "UPDATE jobs SET status = CASE WHEN $4 THEN 'dead' ELSE 'queued' END,"
            " lease_owner = NULL, lease_expires_at = NULL, last_error = $5,"
            " run_after = now() + $6::float8 * interval '1 second',"
            " finished_at = CASE WHEN $4 THEN now() END, updated_at = now()"
            f" WHERE {_FENCE} RETURNING status",
            job.id,
            owner,
            job.attempts,
            dead,
            _error_text(error),
            delay,
        )
        return status

    async def defer(
        self, conn: asyncpg.Connection, job: Job, owner: str, *, delay_s: float, reason: str
    ) -> bool:
        """Give the job back for later without spending an attempt (the work could not start:
        its backend is down, another job holds the object). False if the lease was lost."""
        row = await conn.fetchval(
            "UPDATE jobs SET status = 'queued', attempts = attempts - 1, lease_owner = NULL,"
            " lease_expires_at = NULL, last_error = $4,"
            " run_after = now() + $5::float8 * interval '1 second', updated_at = now()"
            f" WHERE {_FENCE} RETURNING id",
            job.id,
            owner,
            job.attempts,
            _error_text(reason),
            delay_s,
        )
        return row is not None

    # -- operators and workers ---------------------------------------------------------------
    async def retry_dead(
        self, conn: asyncpg.Connection, *, ids: Sequence[int] = (), kind: str | None = None
    ) -> int:
        """Requeue dead jobs (by id, or every dead job of ``kind``) with fresh attempts. A dead
        job whose key is active again (re-enqueued meanwhile) stays dead."""
        result = await conn.execute(
            "UPDATE jobs j SET status = 'queued', attempts = 0, run_after = now(),"
            " finished_at = NULL, updated_at = now()"
            " WHERE j.status = 'dead' AND (j.id = ANY($1::bigint[]) OR j.kind = $2)"
            " AND (j.idempotency_key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs a"
            "   WHERE a.idempotency_key = j.idempotency_key AND a.status IN ('queued', 'leased')))",
            list(ids),
            kind,
        )
        return int(result.split()[-1])

    async def purge_finished(self, conn: asyncpg.Connection, *, older_than_s: float) -> int:
        """Delete done jobs finished more than ``older_than_s`` ago (dead ones are kept: they
        are the operator's to look at and retry)."""
        result = await conn.execute(
            "DELETE FROM jobs WHERE status = 'done'"
            " AND finished_at < now() - $1::float8 * interval '1 second'",
            older_than_s,
        )
        return int(result.split()[-1])

    async def counts(self, conn: asyncpg.Connection) -> dict[tuple[str, str], int]:
        rows = await conn.fetch(
            "SELECT kind, status, count(*) AS n FROM jobs GROUP BY kind, status"
        )
        return {(r["kind"], r["status"]): r["n"] for r in rows}

    async def summary(self, conn: asyncpg.Connection) -> list[QueueSummary]:
        """Per kind: queued, leased and dead jobs, and how long the oldest ready job has
        waited (what to alert on: a queue that only grows, or work nobody leases)."""
        rows = await conn.fetch(
            "SELECT kind,"
            " count(*) FILTER (WHERE status = 'queued') AS queued,"
            " count(*) FILTER (WHERE status = 'leased') AS leased,"
            " count(*) FILTER (WHERE status = 'dead') AS dead,"
            " COALESCE(EXTRACT(EPOCH FROM now() - min(run_after)"
            "   FILTER (WHERE status = 'queued' AND run_after <= now())), 0)::float8"
            "   AS oldest_ready_s"
            " FROM jobs WHERE status <> 'done' GROUP BY kind ORDER BY kind"
        )
        return [
            QueueSummary(
                kind=r["kind"],
                queued=int(r["queued"]),
                leased=int(r["leased"]),
                dead=int(r["dead"]),
                oldest_ready_s=round(float(r["oldest_ready_s"]), 1),
            )
            for r in rows
        ]

    async def lease_holders(self, conn: asyncpg.Connection) -> dict[str, int]:
        """Jobs each agent (lease owner) holds now: the agents at work."""
        rows = await conn.fetch(
            "SELECT lease_owner, count(*) AS n FROM jobs WHERE status = 'leased'"
            " AND lease_owner IS NOT NULL GROUP BY lease_owner ORDER BY lease_owner"
        )
        return {r["lease_owner"]: int(r["n"]) for r in rows}

    async def active_count(
        self, conn: asyncpg.Connection, kind: str, *, match: Mapping[str, Any] | None = None
    ) -> int:
        """Queued or leased jobs of ``kind`` (whose payload contains ``match``): work left."""
        count = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE kind = $1 AND status IN ('queued', 'leased')"
            " AND ($2::text IS NULL OR payload @> ($2::text)::jsonb)",
            kind,
            None if match is None else json.dumps(dict(match)),
        )
        return int(count)

    async def pending(self, conn: asyncpg.Connection, kind: str) -> list[Job]:
        rows = await conn.fetch(
            "SELECT * FROM jobs WHERE kind = $1 AND status IN ('queued', 'leased') ORDER BY id",
            kind,
        )
        return [_job(r) for r in rows]

    async def dead(self, conn: asyncpg.Connection, *, limit: int = 100) -> list[Job]:
        rows = await conn.fetch(
            "SELECT * FROM jobs WHERE status = 'dead' ORDER BY updated_at DESC LIMIT $1", limit
        )
        return [_job(r) for r in rows]

    async def get(self, conn: asyncpg.Connection, job_id: int) -> Job | None:
        row = await conn.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
        return None if row is None else _job(row)

    async def active_targets(
        self, conn: asyncpg.Connection, version_pks: Sequence[int], kinds: Sequence[str]
    ) -> set[tuple[int, int | None]]:
        """(version_pk, backend id or None) of queued or leased jobs of ``kinds`` for these
        versions; the backend is the payload's ``backend_id`` or ``target_backend_id``."""
        rows = await conn.fetch(
            "SELECT DISTINCT (payload->>'version_pk')::bigint AS pk,"
            " COALESCE(payload->>'backend_id', payload->>'target_backend_id') AS backend"
            " FROM jobs WHERE status IN ('queued', 'leased') AND kind = ANY($2::text[])"
            " AND (payload->>'version_pk')::bigint = ANY($1::bigint[])",
            list(version_pks),
            list(kinds),
        )
        return {(r["pk"], int(r["backend"]) if r["backend"] is not None else None) for r in rows}

    # -- one backend's work (health recovery, drains) ----------------------------------------
    async def wake_backend(self, conn: asyncpg.Connection, backend_id: int) -> int:
        """Make every queued data job whose target is the backend (``backend_id`` or
        ``target_backend_id`` in its payload) runnable now, and requeue its dead ones: the
        backend came back, so work deferred while it was down is due at once."""
        result = await conn.execute(
            "UPDATE jobs SET run_after = now(), updated_at = now(),"
            " status = CASE WHEN status = 'dead' THEN 'queued' ELSE status END,"
            " attempts = CASE WHEN status = 'dead' THEN 0 ELSE attempts END,"
            " finished_at = CASE WHEN status = 'dead' THEN NULL ELSE finished_at END"
            " WHERE kind = ANY($2::text[]) AND status IN ('queued', 'dead')"
            " AND COALESCE(payload->>'target_backend_id', payload->>'backend_id') = $1::text"
            " AND (status = 'queued' OR idempotency_key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs a"
            "   WHERE a.idempotency_key = jobs.idempotency_key"
            "   AND a.status IN ('queued', 'leased')))",
            str(backend_id),
            [JobKind.REPLICATE, JobKind.REPAIR],
        )
        return int(result.split()[-1])

    async def moves_of_backend(self, conn: asyncpg.Connection, backend_id: int) -> dict[str, int]:
        """``move`` jobs off the backend by status (a drain's queue), plus ``blocked``: the
        queued ones an agent found impossible under the policy (``last_error`` starts with
        ``BLOCKED_PREFIX``)."""
        rows = await conn.fetch(
            "SELECT status, count(*) AS n,"
            " count(*) FILTER (WHERE last_error LIKE $2 || '%') AS blocked"
            " FROM jobs WHERE kind = $3 AND payload->>'backend_id' = $1::text"
            " AND status IN ('queued', 'leased', 'dead') GROUP BY status",
            str(backend_id),
            BLOCKED_PREFIX,
            JobKind.MOVE,
        )
        out = {r["status"]: int(r["n"]) for r in rows}
        out["blocked"] = sum(int(r["blocked"]) for r in rows)
        return out

    async def blocked_moves(
        self, conn: asyncpg.Connection, backend_id: int, *, limit: int = 100
    ) -> list[tuple[int, str]]:
        """(version_pk, why) of the backend's blocked or dead-lettered moves, oldest first."""
        rows = await conn.fetch(
            "SELECT (payload->>'version_pk')::bigint AS pk, last_error FROM jobs"
            " WHERE kind = $3 AND payload->>'backend_id' = $1::text"
            " AND (status = 'dead'"
            "   OR (status IN ('queued', 'leased') AND last_error LIKE $2 || '%'))"
            " ORDER BY id LIMIT $4",
            str(backend_id),
            BLOCKED_PREFIX,
            JobKind.MOVE,
            limit,
        )
        return [(int(r["pk"]), str(r["last_error"] or "")) for r in rows]

    async def active_keys(self, conn: asyncpg.Connection, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` belong to a queued or leased job."""
        rows = await conn.fetch(
            "SELECT idempotency_key FROM jobs WHERE idempotency_key = ANY($1::text[])"
            " AND status IN ('queued', 'leased')",
            list(keys),
        )
        return {r["idempotency_key"] for r in rows}

    async def recently_dead_keys(
        self, conn: asyncpg.Connection, keys: Sequence[str], *, within_s: float
    ) -> set[str]:
        """Which of ``keys`` went to the dead letter less than ``within_s`` seconds ago (the
        repairer leaves those alone for a while instead of re-enqueueing them at once)."""
        rows = await conn.fetch(
            "SELECT DISTINCT idempotency_key FROM jobs WHERE idempotency_key = ANY($1::text[])"
            " AND status = 'dead' AND updated_at > now() - $2::float8 * interval '1 second'",
            list(keys),
            within_s,
        )
        return {r["idempotency_key"] for r in rows}
