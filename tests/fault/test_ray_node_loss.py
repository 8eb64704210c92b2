"""A simulated multi-node Ray cluster (``ray.cluster_utils.Cluster``: a head and two worker
nodes) loses the node hosting the replication agent while it works through a queue of jobs.

The scenario runs in a subprocess with its own Ray (the test session's ``ray.init`` cannot be
shared), its own PostgreSQL database and Redis, and three local-directory backends. Objects are
committed as the write path would after one backend was down: replicas on b0 and b1 ``ok``,
b2 ``pending`` with a ``replicate`` job each. The agent is pinned to the worker nodes with a
custom resource; once it has finished some jobs, its node is removed. Ray restarts the agent
(``max_restarts=-1``) on the other worker node, along with any backend actor that lived on
the lost node; the jobs it held come back when their leases expire. Asserted: every job done
exactly once, every b2 replica ``ok`` with the right bytes, the agent on another node.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.fault

BASE = os.environ.get("BP_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
JOBS = 120
SIZE = 64 * 1024


async def _prepare(url: str, workdir: Path) -> list[tuple[int, bytes]]:
    """Database, backends, and JOBS objects pending on b2; returns (version pk, sha256)."""
    from actors.backend_client import LocalDirectoryClient, new_locator
    from schema.backends import BackendRepository
    from schema.buckets import BucketRepository
    from schema.db import Database, ensure_database
    from schema.jobs import JobQueue
    from schema.migrate import apply_migrations
    from schema.records import NewReplica, NewVersion
    from schema.tenants import TenantRepository
    from schema.versions import VersionRepository

    await ensure_database(url)
    await apply_migrations(url)
    db = await Database.connect(url, max_size=2)
    made: list[tuple[int, bytes]] = []
    try:
        async with db.transaction() as conn:
            ids = {}
            for name, region, country in (
                ("b0", "eu-west", "DE"),
                ("b1", "eu-central", "FR"),
                ("b2", "us-east", "US"),
            ):
                record = await BackendRepository().add(
                    conn,
                    name=name,
                    kind="local",
                    region=region,
                    country=country,
                    jurisdiction="EU" if country != "US" else "US",
                    provider=name,
                    path=str(workdir / name),
                )
                ids[name] = record.id
            tenant = await TenantRepository().create(conn, "nodeloss", allow_plaintext=True)
            bucket = await BucketRepository().create(conn, tenant.id, "bkt")
        clients = {n: LocalDirectoryClient(str(workdir / n)) for n in ("b0", "b1")}
        for client in clients.values():
            client.ensure_ready()
        for i in range(JOBS):
            data = os.urandom(SIZE)
            sha = hashlib.sha256(data).digest()
            locators = {n: new_locator() for n in ("b0", "b1", "b2")}
            for n, client in clients.items():
                client.put(locators[n], data)
            async with db.transaction() as conn:
                version, _ = await VersionRepository().commit_version(
                    conn,
                    NewVersion(
                        tenant_id=tenant.id,
                        bucket_id=bucket.id,
                        key=f"k{i}",
                        version_id=secrets.token_hex(8),
                        size=SIZE,
                        etag="",
                        sha256=sha,
                        content_type=None,
                        user_metadata={},
                        redundancy_class="StandardClass",
                        part_size=SIZE,
                        part_count=1,
                        encrypted=False,
                    ),
                    [
                        NewReplica(
                            ids[n], locators[n], 0, SIZE, sha, "pending" if n == "b2" else "ok"
                        )
                        for n in ("b0", "b1", "b2")
                    ],
                )
                await JobQueue().enqueue(
                    conn,
                    "replicate",
                    {"version_pk": version.id, "target_backend_id": ids["b2"]},
                    idempotency_key=f"replicate:{version.id}:{ids['b2']}",
                )
            made.append((version.id, sha))
    finally:
        await db.close()
    return made


async def _count(url: str, query: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        value: int = await conn.fetchval(query)
        return value
    finally:
        await conn.close()


def scenario(url: str, redis_url: str, workdir: str) -> dict[str, Any]:
    """Run in a fresh interpreter (see the module docstring); returns what it observed."""
    import ray
    from ray.cluster_utils import Cluster

    from actors.replication_agent import start_agents
    from core.sealing import generate_master_key
    from core.settings import load_settings

    work = Path(workdir)
    (work / "state").mkdir(parents=True, exist_ok=True)
    (work / "state" / "master.key").write_bytes(generate_master_key() + b"\n")
    asyncio.run(_prepare(url, work))
    settings = dataclasses.replace(
        load_settings(
            env={
                "BP_DATABASE_URL": url,
                "BP_REDIS_URL": redis_url,
                "BP_STATE_DIR": str(work / "state"),
                "BP_HEALTH_INTERVAL_S": "1",
            }
        ),
        agent_lease_s=3.0,
        agent_poll_s=0.2,
        agent_concurrency=2,
    )
    store = 80 * 1024 * 1024
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "object_store_memory": store,
            "include_dashboard": False,
            # Notice a dead node in ~1.5 s instead of Ray's default ~15 s.
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3},
        },
    )
    workers = [
        cluster.add_node(num_cpus=1, resources={"agent_slot": 1}, object_store_memory=store)
        for _ in range(2)
    ]
    ray.init(address=cluster.address, namespace="bulletproof", log_to_driver=False)
    started = time.monotonic()
    try:
        (agent,) = start_agents(settings, 1, prefix="nodeloss-", resources={"agent_slot": 1})
        before = ray.get(agent.where.remote(), timeout=60)
        done_query = "SELECT count(*) FROM jobs WHERE status = 'done'"
        deadline = time.monotonic() + 60
        while asyncio.run(_count(url, done_query)) < JOBS // 6:
            assert time.monotonic() < deadline, "the agent never got going"
            time.sleep(0.05)
        done_at_loss = asyncio.run(_count(url, done_query))
        lost = next(n for n in workers if n.node_id == before["node_id"])
        lost_at = time.monotonic()
        cluster.remove_node(lost, allow_graceful=False)
        deadline = time.monotonic() + 120
        while asyncio.run(_count(url, done_query)) < JOBS:
            assert time.monotonic() < deadline, "jobs were not finished after the node loss"
            time.sleep(0.2)
        recovered_s = time.monotonic() - lost_at
        after = ray.get(agent.where.remote(), timeout=60)
        result = {
            "done_at_loss": done_at_loss,
            "recovered_s": round(recovered_s, 2),
            "started_s": round(lost_at - started, 2),
            "node_before": before["node_id"],
            "node_after": after["node_id"],
            "jobs": asyncio.run(_count(url, "SELECT count(*) FROM jobs")),
            "done": asyncio.run(_count(url, done_query)),
            "retried": asyncio.run(_count(url, "SELECT count(*) FROM jobs WHERE attempts > 1")),
            "b2_ok": asyncio.run(
                _count(
                    url,
                    "SELECT count(*) FROM replicas r JOIN backends b ON b.id = r.backend_id"
                    " WHERE b.name = 'b2' AND r.status = 'ok'",
                )
            ),
        }
        rows = asyncio.run(_rows(url))
        result["b2_bytes_ok"] = sum(
            hashlib.sha256((work / "b2" / loc).read_bytes()).digest() == sha for loc, sha in rows
        )
        return result
    finally:
        ray.shutdown()
        cluster.shutdown()


async def _rows(url: str) -> list[tuple[str, bytes]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT r.locator, r.sha256 FROM replicas r JOIN backends b ON b.id = r.backend_id"
            " WHERE b.name = 'b2'"
        )
    finally:
        await conn.close()
    return [(r["locator"], bytes(r["sha256"])) for r in rows]


def test_agent_node_lost_mid_queue_jobs_finish_once_on_another_node(tmp_path: Path) -> None:
    from tests.support.processes import RedisServer

    name = f"bp_nodeloss_{os.getpid()}_{secrets.token_hex(3)}"
    url = f"{BASE}/{name}"
    redis = RedisServer(workdir=tmp_path)
    redis.start()
    try:
        code = (
            "import json, sys; from tests.fault.test_ray_node_loss import scenario;"
            " print('RESULT ' + json.dumps(scenario(*sys.argv[1:4])))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, url, redis.url, str(tmp_path / "work")],
            capture_output=True,
            text=True,
            timeout=400,
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "RAY_ADDRESS": ""},
        )
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        assert done.returncode == 0 and line, done.stdout[-3000:] + done.stderr[-3000:]
        result = json.loads(line[len("RESULT ") :])
    finally:
        redis.stop()
        asyncio.run(_drop(name))
    assert 0 < result["done_at_loss"] < JOBS, result
    assert result["node_after"] != result["node_before"], result
    assert result["jobs"] == result["done"] == JOBS, result  # each once, none duplicated
    assert result["b2_ok"] == result["b2_bytes_ok"] == JOBS, result


async def _drop(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(f"{BASE}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
