"""The job queue against real PostgreSQL (a private database; no Ray, no gateway): leases with
SKIP LOCKED under concurrency, heartbeat renewal, fencing of a taken-over lease, retries with
backoff, the dead letter, priorities, idempotency, deferral and housekeeping."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from schema.db import Database
from schema.jobs import Backoff, JobQueue
from schema.worker_state import WorkerStateRepository
from tests.support.database import private_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def db() -> AsyncIterator[Database]:
    async with private_database("bp_queue") as database:
        yield database


@pytest.fixture
async def kind(db: Database) -> str:
    """A job kind of its own per test, so tests do not lease each other's jobs."""
    return f"k{secrets.token_hex(4)}"


Q = JobQueue()


async def enqueue(db: Database, kind: str, n: int = 1, **kw: object) -> list[int]:
    ids = []
    async with db.transaction() as conn:
        for i in range(n):
            job_id = await Q.enqueue(conn, kind, {"i": i}, **kw)  # type: ignore[arg-type]
            assert job_id is not None
            ids.append(job_id)
    return ids


async def row(db: Database, job_id: int) -> asyncpg.Record:
    async with db.connection() as conn:
        found = await conn.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
    assert found is not None
    return found


async def test_concurrent_leasers_never_share_a_job(db: Database, kind: str) -> None:
    ids = await enqueue(db, kind, 60)

    async def leaser(n: int) -> list[int]:
        got = []
        while True:
            async with db.connection() as conn:
                jobs = await Q.lease(conn, f"w{n}", kinds=(kind,), lease_s=30, limit=3)
            if not jobs:
                return got
            got += [j.id for j in jobs]
            await asyncio.sleep(0)

    results = await asyncio.gather(*(leaser(n) for n in range(8)))
    taken = [i for r in results for i in r]
    assert sorted(taken) == sorted(ids)  # every job once, none twice


async def test_idempotency_key_is_unique_while_active_only(db: Database, kind: str) -> None:
    async with db.transaction() as conn:
        first = await Q.enqueue(conn, kind, {}, idempotency_key=f"{kind}:x")
        again = await Q.enqueue(conn, kind, {}, idempotency_key=f"{kind}:x")
    assert first is not None and again is None
    async with db.connection() as conn:
        (job,) = await Q.lease(conn, "w", kinds=(kind,), lease_s=30)
        assert await Q.enqueue(conn, kind, {}, idempotency_key=f"{kind}:x") is None  # leased
        assert await Q.complete(conn, job, "w")
        assert await Q.enqueue(conn, kind, {}, idempotency_key=f"{kind}:x") is not None


async def test_priority_then_age(db: Database, kind: str) -> None:
    low = await enqueue(db, kind, 2, priority=100)
    high = await enqueue(db, kind, 1, priority=10)
    async with db.connection() as conn:
        jobs = await Q.lease(conn, "w", kinds=(kind,), lease_s=30, limit=3)
    assert [j.id for j in jobs] == [*high, *low]


async def test_expired_lease_is_taken_over_and_the_old_owner_is_fenced(
    db: Database, kind: str
) -> None:
    (job_id,) = await enqueue(db, kind)
    async with db.connection() as conn:
        (first,) = await Q.lease(conn, "dead-agent", kinds=(kind,), lease_s=0.2)
        assert await Q.lease(conn, "other", kinds=(kind,), lease_s=30) == []  # still held
        await asyncio.sleep(0.4)
        (second,) = await Q.lease(conn, "other", kinds=(kind,), lease_s=30)
        assert second.id == job_id and second.attempts == 2
        # The first owner wakes up: every write of its lease is refused.
        assert not await Q.heartbeat(conn, first, "dead-agent", lease_s=30)
        assert not await Q.complete(conn, first, "dead-agent")
        assert await Q.fail(conn, first, "dead-agent", "late") is None
        assert not await Q.defer(conn, first, "dead-agent", delay_s=0, reason="late")
        assert await Q.complete(conn, second, "other")
    done = await row(db, job_id)
    assert done["status"] == "done" and done["finished_at"] is not None


async def test_heartbeat_keeps_the_lease(db: Database, kind: str) -> None:
    await enqueue(db, kind)
    async with db.connection() as conn:
        (job,) = await Q.lease(conn, "a", kinds=(kind,), lease_s=0.5)
        for _ in range(4):
            await asyncio.sleep(0.25)
            assert await Q.heartbeat(conn, job, "a", lease_s=0.5)
        assert await Q.lease(conn, "b", kinds=(kind,), lease_s=30) == []
        assert await Q.complete(conn, job, "a")


async def test_failures_back_off_then_dead_letter(db: Database, kind: str) -> None:
    (job_id,) = await enqueue(db, kind, max_attempts=3)
    backoff = Backoff(base_s=0.1, max_s=0.2)
    async with db.connection() as conn:
        for attempt in (1, 2):
            (job,) = await Q.lease(conn, "a", kinds=(kind,), lease_s=30)
            assert job.attempts == attempt
            assert await Q.fail(conn, job, "a", f"boom {attempt}", backoff=backoff) == "queued"
            after = await row(db, job_id)
            assert after["status"] == "queued" and after["last_error"] == f"boom {attempt}"
            assert await Q.lease(conn, "a", kinds=(kind,), lease_s=30) == []  # backing off
            await asyncio.sleep(0.25)
        (job,) = await Q.lease(conn, "a", kinds=(kind,), lease_s=30)
        assert await Q.fail(conn, job, "a", "boom 3", backoff=backoff) == "dead"
    dead = await row(db, job_id)
    assert (dead["status"], dead["last_error"], dead["attempts"]) == ("dead", "boom 3", 3)
    async with db.connection() as conn:
        assert [j.id for j in await Q.dead(conn) if j.kind == kind] == [job_id]
        assert await Q.retry_dead(conn, ids=[job_id]) == 1
        (again,) = await Q.lease(conn, "a", kinds=(kind,), lease_s=30)
    assert again.id == job_id and again.attempts == 1


async def test_a_lease_that_expires_on_its_last_attempt_is_dead_lettered(
    db: Database, kind: str
) -> None:
    (job_id,) = await enqueue(db, kind, max_attempts=1)
    async with db.connection() as conn:
        await Q.lease(conn, "crashing-agent", kinds=(kind,), lease_s=0.1)
        await asyncio.sleep(0.2)
        assert await Q.lease(conn, "next", kinds=(kind,), lease_s=30) == []
    dead = await row(db, job_id)
    assert dead["status"] == "dead" and "lease expired on attempt 1 of 1" in dead["last_error"]


async def test_defer_spends_no_attempt(db: Database, kind: str) -> None:
    (job_id,) = await enqueue(db, kind, max_attempts=1)
    async with db.connection() as conn:
        for _ in range(3):
            (job,) = await Q.lease(conn, "a", kinds=(kind,), lease_s=30)
            assert job.attempts == 1
            assert await Q.defer(conn, job, "a", delay_s=0.0, reason="backend down")
        (job,) = await Q.lease(conn, "a", kinds=(kind,), lease_s=30)
        assert await Q.complete(conn, job, "a")
    assert (await row(db, job_id))["status"] == "done"


async def test_complete_by_key_wins_over_the_holder(db: Database, kind: str) -> None:
    async with db.transaction() as conn:
        await Q.enqueue(conn, kind, {}, idempotency_key=f"{kind}:k")
    async with db.connection() as conn:
        (job,) = await Q.lease(conn, "agent", kinds=(kind,), lease_s=30)
        await Q.complete_by_key(conn, f"{kind}:k")  # the write path finished it meanwhile
        assert not await Q.complete(conn, job, "agent")


async def test_fenced_complete_rolls_back_the_effect_it_guards(db: Database, kind: str) -> None:
    await enqueue(db, kind)
    async with db.connection() as conn:
        (job,) = await Q.lease(conn, "slow", kinds=(kind,), lease_s=0.1)
        await asyncio.sleep(0.2)
        (taken,) = await Q.lease(conn, "fast", kinds=(kind,), lease_s=30)
    marker = f"effect-{kind}"

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO worker_state (name) VALUES ($1)", marker)
            if not await Q.complete(conn, job, "slow"):
                raise Rollback
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT 1 FROM worker_state WHERE name = $1", marker) is None
        assert await Q.complete(conn, taken, "fast")


async def test_purge_keeps_dead_and_recent(db: Database, kind: str) -> None:
    ids = await enqueue(db, kind, 3, max_attempts=1)
    async with db.connection() as conn:
        jobs = await Q.lease(conn, "a", kinds=(kind,), lease_s=30, limit=3)
        await Q.complete(conn, jobs[0], "a")
        await Q.complete(conn, jobs[1], "a")
        await Q.fail(conn, jobs[2], "a", "x", permanent=True)
        await conn.execute(
            "UPDATE jobs SET finished_at = now() - interval '2 days' WHERE id = $1", ids[0]
        )
        assert await Q.purge_finished(conn, older_than_s=86400) >= 1
        left = {r["id"] for r in await conn.fetch("SELECT id FROM jobs WHERE kind = $1", kind)}
    assert left == {ids[1], ids[2]}


async def test_worker_run_lease_excludes_a_second_runner(db: Database) -> None:
    repo = WorkerStateRepository()
    name = f"w{secrets.token_hex(3)}"
    async with db.connection() as conn:
        assert await repo.take_run_lease(conn, name, "s1", lease_s=0.3)
        assert not await repo.take_run_lease(conn, name, "s2", lease_s=0.3)
        await asyncio.sleep(0.4)  # s1 died: its lease expires
        assert await repo.take_run_lease(conn, name, "s2", lease_s=30)
        await repo.finish_run(conn, name, "s1", report={"late": 1}, error=None)  # ignored
        await repo.finish_run(conn, name, "s2", report={"ok": 1}, error=None)
        (status,) = [s for s in await repo.all(conn) if s.name == name]
        assert status.lease_owner is None and status.last_report == {"ok": 1}
        await repo.set_cursor(conn, name, 42)
        assert await repo.cursor(conn, name) == 42


async def test_many_agents_random_outcomes_settle_every_job(db: Database, kind: str) -> None:
    """Agents lease, sometimes crash (lease left to expire), sometimes fail, usually succeed:
    in the end every job is done exactly once or dead, and nothing is left leased."""
    ids = await enqueue(db, kind, 40, max_attempts=4)
    completions: dict[int, int] = {}
    rng = random.Random(7)
    backoff = Backoff(base_s=0.01, max_s=0.05)

    async def agent(n: int) -> None:
        idle = 0
        while idle < 20:
            async with db.connection() as conn:
                jobs = await Q.lease(conn, f"a{n}", kinds=(kind,), lease_s=0.15, limit=2)
                if not jobs:
                    idle += 1
                    await asyncio.sleep(0.05)
                    continue
                idle = 0
                for job in jobs:
                    roll = rng.random()
                    if roll < 0.15:
                        continue  # crash: the lease expires
                    if roll < 0.35:
                        await Q.fail(conn, job, f"a{n}", "transient", backoff=backoff)
                        continue
                    async with conn.transaction():
                        if await Q.complete(conn, job, f"a{n}"):
                            completions[job.id] = completions.get(job.id, 0) + 1

    await asyncio.gather(*(agent(n) for n in range(4)))
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT id, status FROM jobs WHERE kind = $1", kind)
    states = {r["id"]: r["status"] for r in rows}
    assert set(states) == set(ids)
    assert set(states.values()) <= {"done", "dead"}
    assert all(n == 1 for n in completions.values())
    assert {i for i, s in states.items() if s == "done"} == set(completions)


async def test_enqueue_many_is_one_statement_and_respects_idempotency(
    db: Database, kind: str
) -> None:
    async with db.transaction() as conn:
        taken = await Q.enqueue(conn, kind, {"i": -1}, idempotency_key=f"{kind}:3")
    assert taken is not None
    batch = [({"i": i, "k": "ü/ %2F"}, f"{kind}:{i}") for i in range(5000)]
    batch += [({"i": 7, "dup": True}, f"{kind}:7"), ({"i": "no key"}, None)]
    async with db.connection() as conn:
        statements = []
        conn.add_query_logger(lambda q: statements.append(q.query))
        async with conn.transaction():
            ids = await Q.enqueue_many(conn, kind, batch, priority=40, max_attempts=3)
        assert await Q.enqueue_many(conn, kind, []) == []
    assert len([s for s in statements if "INSERT INTO jobs" in s]) == 1
    # 5,000 keys less the one already queued, the repeat within the batch is a no-op, plus the
    # job without a key
    assert len(ids) == 5000 and ids == sorted(ids)
    async with db.connection() as conn:
        pending = await Q.pending(conn, kind)
    assert len(pending) == 5001
    by_key = {j.idempotency_key: j for j in pending}
    assert by_key[f"{kind}:3"].id == taken and by_key[f"{kind}:3"].payload == {"i": -1}
    assert by_key[f"{kind}:7"].payload == {"i": 7, "k": "ü/ %2F"}
    assert by_key[None].payload == {"i": "no key"}
    assert {(j.priority, j.max_attempts) for j in pending if j.id != taken} == {(40, 3)}
    # batch order is queue order among equals
    first = [j for j in pending if j.id != taken][:3]
    assert [j.payload["i"] for j in first] == [0, 1, 2]
    # once done, the same keys can be enqueued again
    async with db.connection() as conn:
        jobs = await Q.lease(conn, "w", kinds=(kind,), lease_s=30, limit=10)
        for job in jobs:
            assert await Q.complete(conn, job, "w")
        again = await Q.enqueue_many(conn, kind, [({}, j.idempotency_key) for j in jobs])
    assert len(again) == len([j for j in jobs if j.idempotency_key is not None])
