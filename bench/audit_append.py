"""``python -m bench.audit_append [--writers 16] [--tenants 16] [--procs 4] [--seconds 10]
[--rtt-ms 0] [--batch 0]``

Audit commits per second with concurrent writers, against a private PostgreSQL database.

Each writer loops over one transaction shaped like a commit around its audit entry: one
``changelog`` insert, then ``AuditLog.append`` last (as ``commit_version`` does), then COMMIT.
Writer ``i`` acts for tenant ``1 + i % --tenants``, so with one chain per tenant writers contend
only when they share a tenant. Writers are spread over ``--procs`` processes (one asyncpg pool
each, like gateway replicas), so one client process's CPU is not what is measured.
``--rtt-ms`` sleeps that long before each statement a writer sends itself (the insert, the
append, the COMMIT): a database across a network, where a held lock also waits for the
round trips. ``--batch N`` adds one writer, in the parent process, that rewraps N objects of
tenant 1 per transaction in a loop, each item an insert plus an ``append`` (the rewrap
handler's pattern before it batched its entries), to show what a long batch costs everyone
else. Every chain is verified at the end (a fork or gap fails the run).

Reported: commits/s of the ordinary writers, p50/p99 commit latency, entries/s of the batch.
Needs PostgreSQL on ``127.0.0.1:5432`` (or ``BP_TEST_PG``). The same script measures the code
before a change (run it with ``PYTHONPATH`` pointing at a checkout of the old commit). On a
shared 2-CPU machine compare runs made one after the other, not absolute figures across days.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from schema.audit import AuditEntry
from schema.db import Database
from schema.store import MetadataStore
from tests.support.database import private_database_url


async def _rtt(ms: float) -> None:
    if ms:
        await asyncio.sleep(ms / 1000)


async def _writer(
    store: MetadataStore, n: int, tenant_id: int, deadline: float, rtt_ms: float
) -> list[float]:
    latencies = []
    done = 0
    while time.time() < deadline:
        began = time.monotonic()
        async with store.db.transaction() as conn:
            await _rtt(rtt_ms)
            await conn.execute(
                "INSERT INTO changelog (tenant_id, op) VALUES ($1, 'bench')", tenant_id
            )
            await _rtt(rtt_ms)
            entry = AuditEntry(
                "bench", "PutObject", f"b/{n}/{done}", f"r{n}-{done}", "ok", tenant_id
            )
            await store.audit.append(conn, entry)
            await _rtt(rtt_ms)
        latencies.append(time.monotonic() - began)
        done += 1
    return latencies


async def _process(
    url: str, writers: list[int], tenants: int, start: float, deadline: float, rtt_ms: float
) -> list[float]:
    db = await Database.connect(url, max_size=len(writers) + 1)
    try:
        store = MetadataStore(db)
        await asyncio.sleep(max(0.0, start - time.time()))
        runs = await asyncio.gather(
            *(_writer(store, n, 1 + n % tenants, deadline, rtt_ms) for n in writers)
        )
        return [x for run in runs for x in run]
    finally:
        await db.close()


def _process_main(*args: Any) -> list[float]:
    return asyncio.run(_process(*args))


async def _batcher(
    store: MetadataStore, size: int, start: float, deadline: float, rtt_ms: float
) -> int:
    await asyncio.sleep(max(0.0, start - time.time()))
    done = 0
    while time.time() < deadline:
        async with store.db.transaction() as conn:
            for i in range(size):
                await conn.execute("INSERT INTO changelog (tenant_id, op) VALUES (1, 'rewrap')")
                await store.audit.append(
                    conn, AuditEntry("bench", "RewrapObject", f"b/{i}", "batch", "ok", 1)
                )
            await _rtt(rtt_ms)
        done += size
    return done


async def run(
    writers: int, tenants: int, procs: int, seconds: float, rtt_ms: float, batch: int
) -> dict[str, Any]:
    async with private_database_url("bench_audit") as url:
        start = time.time() + 3.0  # every process connected before the clock starts
        deadline = start + seconds
        groups = [list(range(p, writers, procs)) for p in range(procs)]
        db = await Database.connect(url, max_size=2)
        store = MetadataStore(db)
        try:
            with ProcessPoolExecutor(procs) as pool:
                loop = asyncio.get_running_loop()
                futures = [
                    loop.run_in_executor(
                        pool, _process_main, url, g, tenants, start, deadline, rtt_ms
                    )
                    for g in groups
                    if g
                ]
                batched = await _batcher(store, batch, start, deadline, rtt_ms) if batch else 0
                latencies = sorted(x for part in await asyncio.gather(*futures) for x in part)
            async with db.connection() as conn:
                verified = await store.audit.verify(conn)
        finally:
            await db.close()
    ok = verified.ok if hasattr(verified, "ok") else True  # the single-chain verify raised
    return {
        "writers": writers,
        "tenants": tenants,
        "procs": procs,
        "rtt_ms": rtt_ms,
        "batch": batch,
        "commits_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2),
        "batch_entries_per_s": round(batched / seconds, 1),
        "verified": ok,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--tenants", type=int, default=16)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rtt-ms", type=float, default=0.0)
    parser.add_argument("--batch", type=int, default=0)
    args = parser.parse_args()
    result = asyncio.run(
        run(args.writers, args.tenants, args.procs, args.seconds, args.rtt_ms, args.batch)
    )
    print(json.dumps(result))
    sys.exit(0 if result["verified"] else 1)


if __name__ == "__main__":
    main()
