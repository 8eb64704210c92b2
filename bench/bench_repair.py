"""``python -m bench.bench_repair [--objects 1000] [--size-mib 1] [--agents 2] [--concurrency 8]``

Repair after a backend returns empty, against a direct boto3 copy of the same bytes.

One run starts a private federation (``tests.support.cluster.start_cluster``: Redis, three moto
S3 servers as processes, a private PostgreSQL database, the gateway on an in-process Ray) with
production part size and timeouts, PUTs N objects through the gateway (3 replicas each) and
waits until every replica is ``ok``. Then:

1. **Repair.** Backend b2 is killed and started again empty (moto keeps nothing), and the
   timer starts. The scrubber's listing audit finds the N missing replicas (one LIST, a HEAD per
   absent object, marks + repair jobs in one transaction); ``--agents`` ReplicationAgent actors
   (``--concurrency`` jobs each, started before the timer) copy each replica from a verified
   source back to b2 under its recorded locator and commit. The timer stops when the database
   shows all N replicas on b2 ``ok``. Reported: time to detect, time back to full redundancy
   (detection included), objects/s and MB/s of the copy phase. Every b2 object is then read
   straight from moto and its SHA-256 compared with the replica row (a wrong byte fails the run).
2. **Baseline.** b2 is emptied again and the same objects are copied from b0 to b2 with boto3
   (GET + PUT, same number of threads as agent slots, no verification, no metadata).

MB = 10^6 bytes. The machine's load average is recorded: on a shared 2-CPU machine, compare the
ratio between the two phases of one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import secrets
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["main"]

MIB = 1024 * 1024
OVERRIDES = {"BP_PART_SIZE": "", "BP_BACKEND_TIMEOUT_S": "", "BP_HEALTH_INTERVAL_S": "2"}


def _put_all(cluster: Any, bucket: str, blobs: dict[str, bytes], threads: int) -> float:
    _, key, secret = cluster.create_tenant(allow_plaintext=True)
    s3 = cluster.s3(key, secret, max_pool_connections=threads)
    s3.create_bucket(Bucket=bucket)
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(
            pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), blobs.items())
        )
    return time.perf_counter() - start


async def _count(ctx: Any, query: str, *args: Any) -> int:
    async with ctx.store.db.connection() as conn:
        value: int = await conn.fetchval(query, *args)
    return value


_B2_OK = (
    "SELECT count(*) FROM replicas r JOIN backends b ON b.id = r.backend_id"
    " WHERE b.name = 'b2' AND r.status = 'ok'"
)


async def _repair_phase(cluster: Any, n: int, agents: int, concurrency: int) -> dict[str, Any]:
    from actors.healing import HealingContext
    from actors.replication_agent import start_agents, stop_agents
    from jobs.scrubber import Scrubber

    settings = dataclasses.replace(
        cluster.settings, agent_poll_s=0.2, agent_concurrency=concurrency
    )
    ctx = await HealingContext.connect(settings, use_ray=True)
    handles = start_agents(settings, agents, prefix="bench-")
    try:
        import ray

        await asyncio.to_thread(ray.get, [h.pid.remote() for h in handles])  # started
        deadline = time.monotonic() + 600
        while await _count(ctx, "SELECT count(*) FROM replicas WHERE status <> 'ok'"):
            if time.monotonic() > deadline:
                raise RuntimeError("the writes never settled")
            await asyncio.sleep(0.2)
        cluster.motos[2].kill()
        cluster.motos[2].start()  # back, empty
        await ctx.registry.ping_all()
        start = time.perf_counter()
        report = await Scrubber(ctx, batch=0, listing_interval_s=0).run_once()
        detected = time.perf_counter()
        while await _count(ctx, _B2_OK) < n:
            if time.monotonic() > deadline:
                raise RuntimeError("repair did not finish within 10 minutes")
            await asyncio.sleep(0.05)
        done = time.perf_counter()
        stats = await asyncio.to_thread(ray.get, [h.stats.remote() for h in handles])
    finally:
        stop_agents(handles)
        await ctx.close()
    return {
        "missing_found": report.get("missing", 0),
        "detect_s": detected - start,
        "copy_s": done - detected,
        "full_redundancy_s": done - start,
        "agents": [
            {k: s.get(k) for k in ("done", "failed", "deferred", "lost", "bytes", "seconds")}
            for s in stats
        ],
    }


def _verify_b2(cluster: Any, n: int, threads: int) -> int:
    import asyncpg

    async def rows() -> list[Any]:
        conn = await asyncpg.connect(cluster.settings.database_url)
        try:
            return list(
                await conn.fetch(
                    "SELECT r.locator, r.sha256 FROM replicas r JOIN backends b"
                    " ON b.id = r.backend_id WHERE b.name = 'b2'"
                )
            )
        finally:
            await conn.close()

    s3 = cluster.backend_s3(2)
    found = asyncio.run(rows())
    assert len(found) == n

    def check(row: Any) -> bool:
        body = s3.get_object(Bucket="store-b2", Key=row["locator"])["Body"].read()
        return hashlib.sha256(body).digest() == bytes(row["sha256"])

    with ThreadPoolExecutor(threads) as pool:
        return sum(not ok for ok in pool.map(check, found))


def _baseline(cluster: Any, threads: int) -> tuple[float, int]:
    """boto3 GET from b0 + PUT to b2 of every object b0 holds for the bench bucket."""
    import asyncpg

    async def locators() -> list[str]:
        conn = await asyncpg.connect(cluster.settings.database_url)
        try:
            rows = await conn.fetch(
                "SELECT r.locator FROM replicas r JOIN backends b ON b.id = r.backend_id"
                " WHERE b.name = 'b0'"
            )
        finally:
            await conn.close()
        return [r["locator"] for r in rows]

    keys = asyncio.run(locators())
    cluster.motos[2].kill()
    cluster.motos[2].start()
    import boto3
    from botocore.config import Config

    def client(index: int) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=cluster.motos[index].endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
            config=Config(max_pool_connections=threads, retries={"max_attempts": 2}),
        )

    src, dst = client(0), client(2)
    dst.create_bucket(Bucket="store-b2")

    def copy(key: str) -> int:
        body = src.get_object(Bucket="store-b0", Key=key)["Body"].read()
        dst.put_object(Bucket="store-b2", Key=key, Body=body)
        return len(body)

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        moved = sum(pool.map(copy, keys))
    return time.perf_counter() - start, moved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bench_repair", description=__doc__)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--size-mib", type=float, default=1.0)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.support.cluster import start_cluster

    n, size = args.objects, int(args.size_mib * MIB)
    threads = args.agents * args.concurrency
    blobs = {f"obj/{i:05d}": os.urandom(size) for i in range(n)}
    mb = n * size / 1e6
    result: dict[str, Any] = {
        "objects": n,
        "object_bytes": size,
        "agents": args.agents,
        "concurrency": args.concurrency,
        "load_before": os.getloadavg(),
    }
    with (
        tempfile.TemporaryDirectory(prefix="bp-bench-repair-") as tmp,
        start_cluster(Path(tmp), overrides=OVERRIDES) as cluster,
    ):
        result["put_s"] = _put_all(cluster, f"bench-{secrets.token_hex(3)}", blobs, 8)
        del blobs
        repair = asyncio.run(_repair_phase(cluster, n, args.agents, args.concurrency))
        result["repair"] = repair
        result["repair"]["objects_per_s"] = n / repair["copy_s"]
        result["repair"]["mb_per_s"] = mb / repair["copy_s"]
        result["repair"]["wrong_bytes"] = _verify_b2(cluster, n, threads)
        seconds, moved = _baseline(cluster, threads)
        result["baseline"] = {
            "copy_s": seconds,
            "objects_per_s": n / seconds,
            "mb_per_s": moved / 1e6 / seconds,
        }
        result["ratio"] = result["repair"]["objects_per_s"] / result["baseline"]["objects_per_s"]
        result["load_after"] = os.getloadavg()
    r, b = result["repair"], result["baseline"]
    print(
        f"repair of {n} x {size / MIB:g} MiB after a backend returned empty "
        f"({args.agents} agents x {args.concurrency} jobs):\n"
        f"  detection (listing audit)   {r['detect_s']:8.2f} s  ({r['missing_found']} missing)\n"
        f"  copy back                   {r['copy_s']:8.2f} s  {r['objects_per_s']:8.1f} obj/s"
        f"  {r['mb_per_s']:7.1f} MB/s\n"
        f"  back to full redundancy     {r['full_redundancy_s']:8.2f} s\n"
        f"  direct boto3 copy b0->b2    {b['copy_s']:8.2f} s  {b['objects_per_s']:8.1f} obj/s"
        f"  {b['mb_per_s']:7.1f} MB/s  ({threads} threads)\n"
        f"  repair / direct             {result['ratio']:8.2f}x\n"
        f"  wrong bytes on b2           {r['wrong_bytes']}\n"
        f"  load average before/after   {result['load_before'][0]:.1f} / "
        f"{result['load_after'][0]:.1f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 1 if r["wrong_bytes"] else 0


if __name__ == "__main__":
    sys.exit(main())
