"""Self-healing under real faults: moto backend processes killed, frozen, wiped and altered,
agents killed mid-job (Ray actor, Ray worker process, plain process), PostgreSQL restarted
under load, a crash between backend writes and the metadata commit, a backend drained.

Every test asserts that no acknowledged write is lost, no wrong byte is served, and every
object is back to its class afterwards, checked on the backends themselves: each replica row's
object is read straight from its moto server and its SHA-256 compared with the row's.
Loops are bounded; the healing steps are ``run_once()`` calls, or real agents where the test
is about agents.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import ray

from actors.backend_client import new_locator
from actors.healing import HealingContext
from actors.replication_agent import AgentLoop, start_agents, stop_agents
from jobs.placement_checker import PlacementChecker
from jobs.repairer import Repairer
from jobs.scrubber import Scrubber
from jobs.vacuumer import Vacuumer
from schema.garbage import LATEST_MANIFEST_LOCATOR
from schema.jobs import DATA_KINDS, JobKind, replicate_key
from tests.support.cluster import BACKENDS, MOTO_KEY, MOTO_SECRET, Federation
from tests.support.database import PG_RESTART_SKIPPED, restart_postgres
from tests.support.processes import MotoServer

pytestmark = pytest.mark.fault

MIB = 1024 * 1024


# -- fixtures ---------------------------------------------------------------------------------
def fast_settings(cluster: Federation) -> Any:
    """Test timings: short leases and backoffs, so expiry and retries happen within seconds."""
    return dataclasses.replace(
        cluster.settings,
        agent_lease_s=3.0,
        agent_poll_s=0.2,
        agent_defer_s=0.5,
        agent_concurrency=8,
        job_backoff_base_s=0.2,
        job_backoff_max_s=2.0,
        dead_job_cooldown_s=0.0,
    )


@pytest.fixture(scope="module", autouse=True)
def clean_slate(cluster: Federation) -> None:
    """Start this module from a federation without other modules' damage.

    Earlier modules kill and restart backends (moto keeps nothing) and alter bytes on purpose,
    leaving thousands of objects short of their class; healing all of them first would turn
    every test here into a wait on unrelated repairs. These tests assert the healing of their
    own objects, so the metadata of every earlier object and its queued work is dropped (the
    backend bytes become orphans, which the vacuumer test may collect).
    """
    cluster.sql("DELETE FROM jobs")
    cluster.sql("DELETE FROM object_versions")


@pytest.fixture(scope="module")
async def heal(cluster: Federation) -> AsyncIterator[HealingContext]:
    ctx = await HealingContext.connect(fast_settings(cluster), use_ray=True)
    yield ctx
    await ctx.close()


@pytest.fixture
def s3(cluster: Federation, plain_tenant: tuple[str, Any], bucket_name: str) -> Iterator[Any]:
    client = plain_tenant[1]
    client.create_bucket(Bucket=bucket_name)
    yield client
    for index, moto in enumerate(cluster.motos):
        if not moto.running:
            cluster.restart_moto(index)
        else:
            moto.thaw()
    cluster.ping_backends()


# -- helpers ----------------------------------------------------------------------------------
async def sql(ctx: HealingContext, query: str, *args: Any) -> list[dict[str, Any]]:
    async with ctx.store.db.connection() as conn:
        return [dict(r) for r in await conn.fetch(query, *args)]


async def sql_or_none(ctx: HealingContext, query: str, *args: Any) -> list[dict[str, Any]] | None:
    try:
        return await sql(ctx, query, *args)
    except Exception:  # the database is restarting
        return None


async def rows_of(ctx: HealingContext, bucket: str, key: str) -> list[dict[str, Any]]:
    return await sql(
        ctx,
        "SELECT r.*, b.name AS backend, v.part_count FROM replicas r"
        " JOIN object_versions v ON v.id = r.version_pk JOIN buckets k ON k.id = v.bucket_id"
        " JOIN backends b ON b.id = r.backend_id"
        " WHERE k.name = $1 AND v.key = $2 AND v.is_latest ORDER BY b.name, r.part_number",
        bucket,
        key,
    )


def backend_client(cluster: Federation, name: str, extra: dict[str, MotoServer]) -> Any:
    if name in extra:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=extra[name].endpoint,
            aws_access_key_id=MOTO_KEY,
            aws_secret_access_key=MOTO_SECRET,
            region_name="us-east-1",
        )
    return cluster.backend_s3(int(name[1:]))


def backend_bytes(cluster: Federation, name: str, locator: str, extra: dict[str, Any]) -> bytes:
    body = backend_client(cluster, name, extra).get_object(Bucket=f"store-{name}", Key=locator)
    return bytes(body["Body"].read())


async def is_full(ctx: HealingContext, bucket: str, key: str, copies: int = 3) -> bool:
    rows = await rows_of(ctx, bucket, key)
    if not rows:
        return False
    parts = rows[0]["part_count"]
    backends = {r["backend"] for r in rows}
    return (
        len(backends) == copies
        and all(r["status"] == "ok" for r in rows)
        and len(rows) == copies * parts
    )


async def assert_whole(
    ctx: HealingContext,
    cluster: Federation,
    s3: Any,
    bucket: str,
    objects: dict[str, bytes],
    extra: dict[str, Any] | None = None,
    copies: int = 3,
) -> None:
    """Each object: ``copies`` backends, every part ``ok``, and every replica's bytes on its
    backend equal to what the row records and to the data written; the gateway serves it."""
    extra = extra or {}
    for key, data in objects.items():
        rows = await rows_of(ctx, bucket, key)
        assert {r["status"] for r in rows} == {"ok"}, (
            key,
            [(r["backend"], r["status"]) for r in rows],
        )
        assert len({r["backend"] for r in rows}) == copies, key
        part_size = len(data) if rows[0]["part_count"] <= 1 else MIB
        for r in rows:
            stored = backend_bytes(cluster, r["backend"], r["locator"], extra)
            assert hashlib.sha256(stored).digest() == bytes(r["sha256"]), (key, r["backend"])
            start = r["part_number"] * part_size
            assert stored == data[start : start + len(stored)], (key, r["backend"])
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data


async def age_verification(ctx: HealingContext, version_pk: int) -> None:
    """Make a version's replicas the least recently verified (as if a scrub cycle passed)."""
    await sql(
        ctx,
        "UPDATE replicas SET verified_at = now() - interval '30 days' WHERE version_pk = $1",
        version_pk,
    )


async def heal_until(
    ctx: HealingContext,
    done: Callable[[], Any],
    *,
    bucket: str,
    since: Any,
    timeout_s: float = 60.0,
    scrub: bool = False,
) -> None:
    """Repairer (+ scrubber listing audit) and an in-process agent, until ``done()`` (bounded).

    Scoped to this test's bucket: the repairer, the scrubber and the placement checker look at
    the whole session's metadata (other modules' objects, some of them 1 GiB, lost replicas
    when this module wiped a backend), but only this test's data jobs are run (leased first,
    then the pass stops), and the jobs the scans queued since ``since`` for other buckets are
    cancelled at the end, as an operator would cancel work that is not wanted.
    """
    deadline = time.monotonic() + timeout_s
    agent = AgentLoop(ctx, "test-agent", lease_s=3.0, poll_s=0.2, defer_s=0.3)
    try:
        while time.monotonic() < deadline:
            await ctx.registry.ping_all()
            if scrub:
                await Scrubber(ctx, batch=0, listing_interval_s=0).run_once()
            await Repairer(ctx).run_once()
            mine = await sql(
                ctx,
                "UPDATE jobs SET priority = 0 WHERE status = 'queued'"
                " AND kind = ANY($2::text[]) AND (payload->>'version_pk')::bigint IN"
                " (SELECT v.id FROM object_versions v JOIN buckets b ON b.id = v.bucket_id"
                " WHERE b.name = $1) RETURNING id",
                bucket,
                list(DATA_KINDS),
            )
            if mine:
                await agent.run_once(max_jobs=len(mine))
            if await done():
                return
            await asyncio.sleep(0.3)
        raise AssertionError(f"not healed within {timeout_s}s: agent stats {agent.snapshot()}")
    finally:
        await cancel_others(ctx, bucket, since)


async def cancel_others(ctx: HealingContext, bucket: str, since: Any) -> None:
    await sql(
        ctx,
        "UPDATE jobs SET status = 'done', finished_at = now(), updated_at = now(),"
        " last_error = 'cancelled by the test: not its object'"
        " WHERE status = 'queued' AND created_at >= $2 AND kind = ANY($3::text[])"
        " AND (payload->>'version_pk')::bigint NOT IN (SELECT v.id FROM object_versions v"
        " JOIN buckets b ON b.id = v.bucket_id WHERE b.name = $1)",
        bucket,
        since,
        list(DATA_KINDS),
    )


async def db_now(ctx: HealingContext) -> Any:
    return (await sql(ctx, "SELECT now() AS t"))[0]["t"]


async def all_full(ctx: HealingContext, bucket: str, keys: list[str]) -> bool:
    return all([await is_full(ctx, bucket, k) for k in keys])


def payload(i: int) -> bytes:
    size = (100_000, 1 * MIB + 12_345, 2 * MIB + 7)[i % 3]
    return os.urandom(size)


# -- 1. a backend stopped during a PUT load, then restarted -----------------------------------
async def test_backend_down_during_put_load_then_back_empty(
    cluster: Federation, heal: HealingContext, s3: Any, bucket_name: str
) -> None:
    since = await db_now(heal)
    objects = {f"load/{i:02d}": payload(i) for i in range(15)}
    acked: dict[str, bytes] = {}
    errors: list[str] = []

    def writer() -> None:
        for key, data in objects.items():
            try:
                s3.put_object(Bucket=bucket_name, Key=key, Body=data)
                acked[key] = data
            except Exception as exc:  # an unacknowledged write may fail; it must be invisible
                errors.append(f"{key}: {exc}")
            time.sleep(0.05)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    await wait_until(lambda: len(acked) >= 4, 60, "first writes")
    cluster.motos[2].kill()  # b2 dies during the load (some PUTs are in flight)
    await wait_until(lambda: len(acked) >= 10, 60, "writes with b2 down")
    cluster.restart_moto(2)  # b2 returns empty: the replicas it held before are gone
    thread.join(timeout=120)
    assert len(acked) == len(objects), errors  # 2 of 3 up: every write is acknowledged

    keys = list(acked)
    await heal_until(
        heal, lambda: all_full(heal, bucket_name, keys), bucket=bucket_name, since=since, scrub=True
    )
    await assert_whole(heal, cluster, s3, bucket_name, acked)
    dead = await sql(
        heal,
        "SELECT j.id FROM jobs j"
        " JOIN object_versions v ON v.id = (j.payload->>'version_pk')::bigint"
        " JOIN buckets b ON b.id = v.bucket_id WHERE b.name = $1 AND j.status = 'dead'",
        bucket_name,
    )
    assert dead == []


async def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def wait_for_async(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# -- 2. an agent killed mid-job -----------------------------------------------------------------
def _start_process_agent(cluster: Federation, name: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BP_DATABASE_URL": cluster.settings.database_url,
        "BP_REDIS_URL": cluster.settings.redis_url,
        "BP_STATE_DIR": cluster.settings.state_dir,
        "BP_BACKEND_TIMEOUT_S": "5",
        "BP_HEALTH_INTERVAL_S": "1",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cluster.cli_workers",
            "agent",
            "--name",
            name,
            "--lease-s",
            "3",
            "--poll-s",
            "0.2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.mark.parametrize("how", ["ray-kill", "worker-sigkill", "process-sigkill"])
async def test_agent_killed_mid_job_another_agent_finishes_once(
    cluster: Federation, heal: HealingContext, s3: Any, bucket_name: str, how: str
) -> None:
    cluster.motos[2].kill()
    cluster.ping_backends()
    data = os.urandom(6 * MIB + 1)
    s3.put_object(Bucket=bucket_name, Key="victim", Body=data)
    (job,) = await sql(
        heal,
        "SELECT j.id, j.idempotency_key FROM jobs j"
        " JOIN object_versions v ON v.id = (j.payload->>'version_pk')::bigint"
        " JOIN buckets b ON b.id = v.bucket_id WHERE b.name = $1 AND j.kind = 'replicate'",
        bucket_name,
    )
    cluster.restart_moto(2)  # the target is back (empty) ...
    cluster.motos[0].freeze()  # ... but every source hangs: the agent will be stuck mid-copy
    cluster.motos[1].freeze()
    process: subprocess.Popen[bytes] | None = None
    agents: list[Any] = []
    try:
        if how == "process-sigkill":
            process = _start_process_agent(cluster, f"doomed-{how}")
        else:
            agents = start_agents(
                fast_settings(cluster), 1, prefix=f"doomed-{how}-", options={"lease_s": 3.0}
            )
        leased = await wait_for_async(
            lambda: sql(
                heal,
                "SELECT lease_owner, attempts FROM jobs WHERE id = $1 AND status = 'leased'",
                job["id"],
            ),
            30,
            "the agent to lease the job",
        )
        first_owner = leased[0]["lease_owner"]
        await asyncio.sleep(0.5)  # it is now fetching from a frozen source
        if how == "ray-kill":
            ray.kill(agents[0], no_restart=True)
        elif how == "worker-sigkill":
            pid = ray.get(agents[0].pid.remote())
            os.kill(pid, signal.SIGKILL)  # Ray restarts the actor: a new incarnation
        else:
            assert process is not None
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        (still,) = await sql(heal, "SELECT status, lease_owner FROM jobs WHERE id = $1", job["id"])
        assert (still["status"], still["lease_owner"]) == ("leased", first_owner)
    finally:
        cluster.motos[0].thaw()
        cluster.motos[1].thaw()
    cluster.ping_backends()
    await heal.registry.ping_all()
    # After a worker SIGKILL, Ray restarts the actor and its new incarnation finishes the job.
    finisher = None if how == "worker-sigkill" else AgentLoop(heal, f"fin-{how}", lease_s=3.0)

    async def finished() -> bool:
        if finisher is not None:  # this test's job first, one job per pass
            await sql(heal, "UPDATE jobs SET priority = 0 WHERE id = $1", job["id"])
            await finisher.run_once(max_jobs=1)
        rows = await sql(heal, "SELECT status FROM jobs WHERE id = $1", job["id"])
        return rows[0]["status"] == "done"

    try:
        await wait_for_async(finished, 40, "another agent to finish the job")
    finally:
        if agents:
            stop_agents(agents)
    (final,) = await sql(
        heal, "SELECT status, attempts, lease_owner FROM jobs WHERE id = $1", job["id"]
    )
    assert final["status"] == "done" and final["attempts"] >= 2
    same_key = await sql(
        heal, "SELECT status FROM jobs WHERE idempotency_key = $1", job["idempotency_key"]
    )
    assert [r["status"] for r in same_key] == ["done"]  # one job, done once
    rows = await rows_of(heal, bucket_name, "victim")
    assert len(rows) == 3 * 7  # (version, backend, part) unique: no duplicate rows
    await assert_whole(heal, cluster, s3, bucket_name, {"victim": data})
    # No duplicate side effect on the target: exactly the row locators, nothing else.
    b2_keys = {
        o["Key"]
        for o in cluster.backend_s3(2).list_objects_v2(Bucket="store-b2").get("Contents", [])
    }
    victim_b2 = {r["locator"] for r in rows if r["backend"] == "b2"}
    assert victim_b2 <= b2_keys
    referenced = await sql(
        heal,
        "SELECT locator FROM replicas WHERE backend_id = (SELECT id FROM backends"
        " WHERE name = 'b2') UNION SELECT locator FROM garbage WHERE backend_id ="
        " (SELECT id FROM backends WHERE name = 'b2')",
    )
    assert b2_keys <= {r["locator"] for r in referenced}


# -- 3. replica bytes altered on a backend ------------------------------------------------------
async def test_scrubber_finds_altered_and_lost_bytes_and_they_are_repaired(
    cluster: Federation, heal: HealingContext, s3: Any, bucket_name: str
) -> None:
    since = await db_now(heal)
    data = os.urandom(3 * MIB - 5)
    s3.put_object(Bucket=bucket_name, Key="scrubbed", Body=data)
    await wait_for_async(lambda: is_full(heal, bucket_name, "scrubbed"), 20, "all replicas ok")
    rows = await rows_of(heal, bucket_name, "scrubbed")
    altered = next(r for r in rows if r["backend"] == "b0" and r["part_number"] == 1)
    lost = next(r for r in rows if r["backend"] == "b1" and r["part_number"] == 2)
    tampered = bytearray(data[MIB : 2 * MIB])
    tampered[777] ^= 0x01
    cluster.backend_s3(0).put_object(
        Bucket="store-b0", Key=altered["locator"], Body=bytes(tampered)
    )
    cluster.backend_s3(1).delete_object(Bucket="store-b1", Key=lost["locator"])

    # Time passes: this object's replicas become the least recently verified ones.
    await age_verification(heal, altered["version_pk"])
    report = await Scrubber(heal, batch=len(rows), bytes_per_s=0, listing_interval_s=0).run_once()
    assert report["corrupt"] >= 1 and report["missing"] >= 1, report
    states = {r["id"]: r["status"] for r in await rows_of(heal, bucket_name, "scrubbed")}
    assert states[altered["id"]] == "corrupt" and states[lost["id"]] == "missing"
    repairs = await sql(
        heal,
        "SELECT payload->>'backend_id' AS b FROM jobs WHERE kind = 'repair'"
        " AND status = 'queued' AND (payload->>'version_pk')::bigint = $1",
        altered["version_pk"],
    )
    assert sorted(int(r["b"]) for r in repairs) == sorted(
        [altered["backend_id"], lost["backend_id"]]
    )
    # Reads never serve the altered bytes meanwhile.
    assert s3.get_object(Bucket=bucket_name, Key="scrubbed")["Body"].read() == data
    await heal_until(
        heal, lambda: is_full(heal, bucket_name, "scrubbed"), bucket=bucket_name, since=since
    )
    after = {r["id"]: r for r in await rows_of(heal, bucket_name, "scrubbed")}
    assert after[altered["id"]]["locator"] == altered["locator"]  # repaired in place
    await assert_whole(heal, cluster, s3, bucket_name, {"scrubbed": data})


# -- 4. a crash between backend writes and the metadata commit -----------------------------------
async def test_orphans_of_a_crashed_write_are_invisible_and_vacuumed(
    cluster: Federation, heal: HealingContext, s3: Any, bucket_name: str
) -> None:
    s3.put_object(Bucket=bucket_name, Key="kept", Body=b"referenced bytes")
    await wait_for_async(lambda: is_full(heal, bucket_name, "kept"), 20, "kept object ok")
    handles = {h.name: h for h in await heal.registry.current()}
    orphans = {name: [new_locator() for _ in range(3)] for name in ("b0", "b1")}
    for name, locators in orphans.items():  # what a gateway wrote before it crashed
        for locator in locators:
            await heal.registry.store(handles[name].id, locator, os.urandom(1000))
    assert s3.list_objects_v2(Bucket=bucket_name)["KeyCount"] == 1  # nothing visible

    def listing(index: int) -> set[str]:
        pages = cluster.backend_s3(index).get_paginator("list_objects_v2")
        return {
            o["Key"]
            for page in pages.paginate(Bucket=f"store-b{index}")
            for o in page.get("Contents", [])
        }

    before = {index: listing(index) for index in range(3)}
    referenced = {
        (r["backend"], r["locator"])
        for r in await sql(
            heal,
            "SELECT b.name AS backend, r.locator FROM replicas r"
            " JOIN backends b ON b.id = r.backend_id",
        )
    }
    # Within the grace period an orphan is only noted, never deleted.
    report = await Vacuumer(heal, grace_s=3600).run_once()
    assert report["orphans_seen"] >= 6 and report.get("orphans_collected", 0) == 0
    assert set(orphans["b0"]) <= listing(0)
    report = await Vacuumer(heal, grace_s=0).run_once()
    assert report["orphans_collected"] >= 6, report
    after = {index: listing(index) for index in range(3)}
    for index in (0, 1):
        assert not set(orphans[f"b{index}"]) & after[index]
    for backend, locator in referenced:  # nothing metadata references was touched
        index = int(backend[1:]) if backend in ("b0", "b1", "b2") else None
        if index is not None and locator in before[index]:
            assert locator in after[index], (backend, locator)
    for r in await rows_of(heal, bucket_name, "kept"):
        assert r["locator"] in after[int(r["backend"][1:])]
    assert s3.get_object(Bucket=bucket_name, Key="kept")["Body"].read() == b"referenced bytes"


# -- 5. a backend drained: the placement checker moves replicas off it ---------------------------
async def test_draining_backend_is_emptied_without_breaking_the_class(
    cluster: Federation, heal: HealingContext, s3: Any, bucket_name: str
) -> None:
    since = await db_now(heal)
    objects = {f"drain/{i}": payload(i) for i in range(3)}
    for key, data in objects.items():  # on b0, b1, b2: the only three backends yet
        s3.put_object(Bucket=bucket_name, Key=key, Body=data)
    extra = MotoServer()
    extra.start()
    try:
        cluster.add_moto_backend("b3", extra, "eu-north", "SE", "EU")
        on_b1 = [
            k
            for k in objects
            if "b1" in {r["backend"] for r in await rows_of(heal, bucket_name, k)}
        ]
        assert on_b1 == list(objects)
        await sql(heal, "UPDATE backends SET state = 'draining' WHERE name = 'b1'")
        await heal.registry.refresh()
        report = await PlacementChecker(heal).run_once()
        assert report["moves_enqueued"] >= len(on_b1), report

        async def drained() -> bool:
            for key in objects:
                rows = await rows_of(heal, bucket_name, key)
                if "b1" in {r["backend"] for r in rows} or not await is_full(
                    heal, bucket_name, key
                ):
                    return False
            return True

        await heal_until(heal, drained, bucket=bucket_name, since=since)
        for key in objects:
            backends = {r["backend"] for r in await rows_of(heal, bucket_name, key)}
            assert backends == {"b0", "b2", "b3"}  # still 3 copies over >= 2 regions
        await assert_whole(heal, cluster, s3, bucket_name, objects, extra={"b3": extra})
        # The copies left on the drained backend went to garbage and are deleted.
        await Vacuumer(heal, list_backends=False).run_once()
        garbage = await sql(
            heal,
            "SELECT 1 FROM garbage WHERE backend_id = (SELECT id FROM backends WHERE name = 'b1')",
        )
        assert garbage == []
    finally:
        await sql(heal, "UPDATE backends SET state = 'active' WHERE name = 'b1'")
        await sql(heal, "UPDATE backends SET state = 'removed' WHERE name = 'b3'")
        extra.kill()
        cluster.ping_backends()
        await heal.registry.refresh()


# -- 6. PostgreSQL restarted during load ----------------------------------------------------------
@pytest.mark.skipif(PG_RESTART_SKIPPED, reason="BP_TEST_SKIP_PG_RESTART is set")
async def test_postgres_restart_during_load_gateway_and_agents_reconnect(
    cluster: Federation, heal: HealingContext, s3: Any, bucket_name: str
) -> None:
    agents = start_agents(fast_settings(cluster), 2, prefix="pg-")
    acked: dict[str, bytes] = {}
    acked_after: list[str] = []
    restarted = threading.Event()
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            key, data = f"pg/{i:03d}", os.urandom(200_000 + i)
            try:
                s3.put_object(Bucket=bucket_name, Key=key, Body=data)
                acked[key] = data
                if restarted.is_set():
                    acked_after.append(key)
            except Exception:  # 503s while the database restarts are expected
                pass
            i += 1
            time.sleep(0.05)

    # A daemon thread, stopped in the outer finally: a failure anywhere in the test must not
    # leave it writing (nor keep the interpreter from exiting).
    thread = threading.Thread(target=writer, daemon=True)
    try:
        cluster.motos[2].kill()
        cluster.ping_backends()
        thread.start()
        await wait_until(lambda: len(acked) >= 5, 60, "writes before the restart")
        await asyncio.to_thread(restart_postgres)
        restarted.set()
        (restart_at,) = await wait_for_async(
            lambda: sql_or_none(heal, "SELECT now() AS t"), 60, "our pool to reconnect"
        )
        try:
            await wait_until(lambda: len(acked_after) >= 5, 60, "writes after the restart")
        finally:
            # b2 comes back only now: its pending replicas can be filled only by agents that
            # reconnected to the restarted database.
            cluster.restart_moto(2)
            await asyncio.sleep(1.0)
            stop.set()
            await asyncio.to_thread(thread.join, 60)
        keys = sorted(acked)

        async def healed() -> bool:
            try:
                return await all_full(heal, bucket_name, keys)
            except Exception:  # our own pool reconnects too
                return False

        await wait_for_async(healed, 90, "the running agents to heal every object")
        await assert_whole(heal, cluster, s3, bucket_name, acked)
        stats = ray.get([a.stats.remote() for a in agents], timeout=30)
        assert sum(s.get("done", 0) for s in stats) > 0, stats
        after_restart = await sql(
            heal,
            "SELECT count(*) AS n FROM jobs j"
            " JOIN object_versions v ON v.id = (j.payload->>'version_pk')::bigint"
            " JOIN buckets b ON b.id = v.bucket_id WHERE b.name = $1 AND j.kind = 'replicate'"
            " AND j.status = 'done' AND j.finished_at > $2",
            bucket_name,
            restart_at["t"],
        )
        assert after_restart[0]["n"] > 0
    finally:
        stop.set()
        if thread.is_alive():
            await asyncio.to_thread(thread.join, 60)
        stop_agents(agents)


# -- 7. metadata snapshot and restore into a fresh database ---------------------------------------
def _cli(cluster: Federation, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BP_DATABASE_URL": cluster.settings.database_url,
        "BP_REDIS_URL": cluster.settings.redis_url,
        "BP_STATE_DIR": cluster.settings.state_dir,
    }
    return subprocess.run(
        [sys.executable, "-m", "cluster.cli_workers", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def test_snapshot_is_encrypted_on_backends_and_restores_into_a_fresh_database(
    cluster: Federation, heal: HealingContext, s3: Any, bucket_name: str, tmp_path: Any
) -> None:
    import asyncpg
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import x25519

    from jobs.restore import private_key_from_pem
    from jobs.snapshotter import Snapshotter, open_manifest

    key = x25519.X25519PrivateKey.generate()
    (tmp_path / "op.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (tmp_path / "op.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"correct horse"),
        )
    )
    for i in range(3):
        s3.put_object(Bucket=bucket_name, Key=f"snap/{i}", Body=os.urandom(1000 + i))
    snapshotter = Snapshotter(
        heal, public_key_file=str(tmp_path / "op.pub"), manifest_dir=str(tmp_path), part_size=MIB
    )
    report = await snapshotter.run_once()
    assert report["snapshots"] == 1 and report["copies"] == 3, report
    (snap,) = await sql(heal, "SELECT * FROM snapshots ORDER BY id DESC LIMIT 1")
    parts = await sql(
        heal,
        "SELECT p.*, b.name FROM snapshot_parts p JOIN backends b"
        " ON b.id = p.backend_id WHERE snapshot_id = $1",
        snap["id"],
    )
    assert len({p["name"] for p in parts}) == 3
    for p in parts:  # backends hold ciphertext under opaque names
        stored = backend_bytes(cluster, p["name"], p["locator"], {})
        assert hashlib.sha256(stored).digest() == bytes(p["sha256"])
        assert bucket_name.encode() not in stored and b"object_versions" not in stored
    manifest = tmp_path / f"{snap['name']}.json"
    assert manifest.exists() and oct(manifest.stat().st_mode & 0o777) == "0o600"
    # The newest manifest is on the snapshot's backends too, under the one fixed locator.
    assert report["manifest_copies"] == 3, report
    held_on = sorted({p["name"] for p in parts} & {b[0] for b in BACKENDS})
    assert held_on
    operator_key = private_key_from_pem((tmp_path / "op.key").read_bytes(), b"correct horse")
    for name in held_on:  # sealed to the operator: a backend learns no other backend's name
        held = backend_bytes(cluster, name, LATEST_MANIFEST_LOCATOR, {})
        assert b"store-" not in held and b"127.0.0.1" not in held
        assert open_manifest(held, operator_key) == json.loads(manifest.read_text())
    index = [b[0] for b in BACKENDS].index(held_on[0])
    from_backend = f"backend:{cluster.motos[index].endpoint}/{cluster.backend_bucket(index)}"

    base = cluster.settings.database_url.rsplit("/", 1)[0]
    targets = [f"{base}/bp_restore_{os.getpid()}_{i}" for i in range(3)]
    env_pass = {
        "BP_SNAPSHOT_PASSPHRASE": "correct horse",
        "AWS_ACCESS_KEY_ID": MOTO_KEY,  # the backend's own credentials, for backend:...
        "AWS_SECRET_ACCESS_KEY": MOTO_SECRET,
    }
    try:
        os.environ.update(env_pass)
        # From the manifest alone (the disaster case), by name via the live database, and
        # from the manifest a backend holds (the database and the manifest files both gone).
        for source, target in (
            (str(manifest), targets[0]),
            (snap["name"], targets[1]),
            (from_backend, targets[2]),
        ):
            done = _cli(
                cluster,
                "restore",
                source,
                "--private-key",
                str(tmp_path / "op.key"),
                "--passphrase-env",
                "BP_SNAPSHOT_PASSPHRASE",
                "--target-database",
                target,
            )
            assert done.returncode == 0, done.stderr
        again = _cli(
            cluster,
            "restore",
            str(manifest),
            "--private-key",
            str(tmp_path / "op.key"),
            "--passphrase-env",
            "BP_SNAPSHOT_PASSPHRASE",
            "--target-database",
            targets[0],
        )
        assert again.returncode == 1 and "not empty" in again.stderr  # never merges
        wrong = x25519.X25519PrivateKey.generate()
        (tmp_path / "wrong.key").write_bytes(
            wrong.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        refused = _cli(
            cluster,
            "restore",
            str(manifest),
            "--private-key",
            str(tmp_path / "wrong.key"),
            "--target-database",
            f"{targets[1]}_x",
        )
        assert refused.returncode == 1
        query = (
            "SELECT v.key, v.sha256, count(r.id) AS replicas FROM object_versions v"
            " JOIN buckets b ON b.id = v.bucket_id LEFT JOIN replicas r ON r.version_pk = v.id"
            " WHERE b.name = $1 GROUP BY v.key, v.sha256 ORDER BY v.key"
        )
        source_rows = await sql(heal, query, bucket_name)
        for target in targets:
            conn = await asyncpg.connect(target)
            try:
                restored = [dict(r) for r in await conn.fetch(query, bucket_name)]
                chain = await conn.fetchval("SELECT count(*) FROM audit_log")
                migrations = await conn.fetchval("SELECT count(*) FROM schema_migrations")
            finally:
                await conn.close()
            assert restored == source_rows and len(restored) == 3
            assert chain > 0 and migrations >= 3
    finally:
        for variable in env_pass:
            os.environ.pop(variable, None)
        conn = await asyncpg.connect(f"{base}/postgres")
        try:
            for target in (*targets, f"{targets[1]}_x"):
                name = target.rsplit("/", 1)[1]
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


# -- 8. the scheduler actor and `bulletproof worker run` ---------------------------------------
async def test_scheduler_runs_workers_and_the_cli_respects_the_run_lease(
    cluster: Federation, heal: HealingContext
) -> None:
    from actors.scheduler import start_scheduler
    from jobs.catalog import build_worker

    scheduler = start_scheduler(
        fast_settings(cluster), {"repairer": 0.5}, build_worker, name="scheduler-test"
    )
    try:

        async def ran() -> Any:
            status = await asyncio.to_thread(ray.get, scheduler.status.remote(), timeout=30)
            return status["last"].get("repairer", {}).get("ran")

        await wait_for_async(ran, 60, "the scheduler to run the repairer")
        rows = await sql(
            heal, "SELECT last_report, last_error FROM worker_state WHERE name = 'repairer'"
        )
        assert rows and rows[0]["last_error"] is None
    finally:
        with contextlib.suppress(Exception):
            ray.get(scheduler.stop.remote(), timeout=30)
        ray.kill(scheduler, no_restart=True)
    done = _cli(cluster, "worker", "run", "repairer")
    assert done.returncode == 0, done.stderr
    assert '"worker": "repairer"' in done.stdout
    async with heal.store.db.connection() as conn:
        assert await heal.worker_state.take_run_lease(conn, "vacuumer", "someone-else", lease_s=60)
    try:
        busy = _cli(cluster, "worker", "run", "vacuumer")
        assert busy.returncode == 3 and "someone-else" in busy.stderr
    finally:
        async with heal.store.db.connection() as conn:
            await heal.worker_state.finish_run(
                conn, "vacuumer", "someone-else", report=None, error=None
            )


# -- 9. erasure-coded shards: pending, altered and lost shards rebuilt from k others -------------
async def test_erasure_coded_shards_are_rebuilt_in_place(
    cluster: Federation, heal: HealingContext, bucket_name: str
) -> None:
    since = await db_now(heal)
    from tests.integration.test_policy_placement import Fleet, extra_backends, with_class

    specs = [
        ("h3", "eu-north", "SE", "EU"),
        ("h4", "ap-south", "IN", "IN"),
        ("h5", "us-west", "US", "US"),
    ]
    # extra_backends uses asyncio.run on exit: enter and leave it from a thread.
    backends = extra_backends(cluster, specs)
    motos = await asyncio.to_thread(backends.__enter__)
    try:
        fleet = Fleet(cluster, motos)
        _, key_id, secret = cluster.create_tenant(allow_plaintext=True)
        s3 = with_class(cluster.s3(key_id, secret), "ColdArchiveClass")
        s3.create_bucket(Bucket=bucket_name)
        try:
            await heal.registry.refresh()
            fleet.kill("h4")
            cluster.ping_backends()
            data = os.urandom(2 * MIB + 4321)
            s3.put_object(Bucket=bucket_name, Key="coded", Body=data)  # 5 shards + 1 pending
            rows = await rows_of(heal, bucket_name, "coded")
            assert len(rows) == 18 and {r["status"] for r in rows if r["backend"] == "h4"} == {
                "pending"
            }
            fleet.revive()
            cluster.ping_backends()
            await wait_for_async(
                lambda: sql(
                    heal,
                    "SELECT 1 FROM replicas r JOIN object_versions v"
                    " ON v.id = r.version_pk WHERE v.key = 'coded' AND r.status <> 'ok'"
                    " AND r.backend_id <> (SELECT id FROM backends WHERE name = 'h4')"
                    " HAVING count(*) = 0",
                ),
                20,
                "the other shards to settle",
            )
            await heal_until(
                heal, lambda: coded_ok(heal, bucket_name), bucket=bucket_name, since=since
            )
            # Alter one shard and delete another, on two other backends.
            rows = await rows_of(heal, bucket_name, "coded")
            altered = next(r for r in rows if r["part_number"] == 1 and r["backend"] != "h4")
            lost = next(
                r
                for r in rows
                if r["part_number"] == 0 and r["backend"] not in ("h4", altered["backend"])
            )
            client = backend_client(cluster, altered["backend"], motos)
            good = backend_bytes(cluster, altered["backend"], altered["locator"], motos)
            client.put_object(
                Bucket=f"store-{altered['backend']}",
                Key=altered["locator"],
                Body=bytes([good[0] ^ 1]) + good[1:],
            )
            backend_client(cluster, lost["backend"], motos).delete_object(
                Bucket=f"store-{lost['backend']}", Key=lost["locator"]
            )
            await age_verification(heal, altered["version_pk"])
            report = await Scrubber(
                heal, batch=len(rows), bytes_per_s=0, listing_interval_s=0
            ).run_once()
            assert report["corrupt"] >= 1 and report["missing"] >= 1, report
            assert s3.get_object(Bucket=bucket_name, Key="coded")["Body"].read() == data
            await heal_until(
                heal, lambda: coded_ok(heal, bucket_name), bucket=bucket_name, since=since
            )
            rows = await rows_of(heal, bucket_name, "coded")
            assert len(rows) == 18 and len({r["backend"] for r in rows}) == 6
            for r in rows:  # every shard on its backend matches its row again
                stored = backend_bytes(cluster, r["backend"], r["locator"], motos)
                assert hashlib.sha256(stored).digest() == bytes(r["sha256"]), r["backend"]
            by_id = {r["id"]: r for r in rows}
            assert by_id[altered["id"]]["locator"] == altered["locator"]  # in place
            assert s3.get_object(Bucket=bucket_name, Key="coded")["Body"].read() == data
        finally:
            fleet.revive()
    finally:
        for moto in motos.values():
            moto.kill()  # SIGKILL: a moto server takes seconds to honour SIGTERM
        await asyncio.to_thread(backends.__exit__, None, None, None)
        await heal.registry.refresh()


async def coded_ok(ctx: HealingContext, bucket: str) -> bool:
    rows = await rows_of(ctx, bucket, "coded")
    return len(rows) == 18 and {r["status"] for r in rows} == {"ok"}


# -- 8. every source unreachable mid-copy: the job waits, it does not fail ---------------------
async def test_unreachable_sources_defer_a_replication_without_spending_an_attempt(
    cluster: Federation, heal: HealingContext, s3: Any, bucket_name: str
) -> None:
    """A replica waiting on backends that do not answer is waiting, not failing: counted as
    failed attempts, a busy backend's jobs backed off for minutes and were dead-lettered
    (the import engine's run once stayed YELLOW with replicas pending)."""
    s3.put_object(Bucket=bucket_name, Key="wait/0", Body=payload(0))
    await wait_for_async(lambda: is_full(heal, bucket_name, "wait/0"), 60, "the third replica")
    (row,) = [r for r in await rows_of(heal, bucket_name, "wait/0") if r["backend"] == "b2"]
    pk, b2 = row["version_pk"], row["backend_id"]
    await sql(
        heal,
        "UPDATE replicas SET status = 'pending' WHERE version_pk = $1 AND backend_id = $2",
        pk,
        b2,
    )
    async with heal.store.db.connection() as conn:
        await heal.queue.enqueue(
            conn,
            JobKind.REPLICATE,
            {"version_pk": pk, "target_backend_id": b2},
            idempotency_key=replicate_key(pk, b2),
        )
    (queued,) = await sql(  # leased before anything else queued
        heal,
        "UPDATE jobs SET priority = -1, attempts = 0 WHERE idempotency_key = $1"
        " AND status = 'queued' RETURNING id",
        replicate_key(pk, b2),
    )
    job_id = queued["id"]
    cluster.motos[0].kill()  # both sources stop answering; the target b2 is up
    cluster.motos[1].kill()
    agent = AgentLoop(heal, "waiting-agent", lease_s=30.0, defer_s=60.0)
    await agent.run_once(max_jobs=1)
    (job,) = await sql(heal, "SELECT * FROM jobs WHERE id = $1", job_id)
    assert "no verified source" in job["last_error"], job["last_error"]
    assert (job["status"], job["attempts"]) == ("queued", 0), job
    assert agent.stats.deferred == 1 and agent.stats.failed == 0
    (left,) = [r for r in await rows_of(heal, bucket_name, "wait/0") if r["backend"] == "b2"]
    assert left["status"] == "pending"
    await sql(heal, "UPDATE jobs SET status = 'done' WHERE id = $1", job_id)
