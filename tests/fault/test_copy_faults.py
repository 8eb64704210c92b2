"""Faults on shared replicas (CopyObject): a corrupted shared backend object is never served
to either version and is repaired in place for both; the vacuumer's orphan audit and the
garbage collector never delete an object a surviving copy still names."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from actors.healing import HealingContext
from jobs.scrubber import Scrubber
from jobs.vacuumer import Vacuumer
from tests.fault.test_self_healing import (
    MIB,
    age_verification,
    backend_bytes,
    db_now,
    fast_settings,
    heal_until,
    is_full,
    sql,
    wait_for_async,
)
from tests.support.cluster import Federation

pytestmark = pytest.mark.fault


@pytest.fixture(scope="module")
async def heal(cluster: Federation) -> AsyncIterator[HealingContext]:
    ctx = await HealingContext.connect(fast_settings(cluster), use_ray=True)
    yield ctx
    await ctx.close()


@pytest.fixture
def s3(cluster: Federation, bucket_name: str) -> Iterator[Any]:
    _, key, secret = cluster.create_tenant(allow_plaintext=True)
    client = cluster.s3(key, secret)
    client.create_bucket(Bucket=bucket_name)
    yield client


async def _rows(ctx: HealingContext, bucket: str, key: str) -> list[dict[str, Any]]:
    return await sql(
        ctx,
        "SELECT r.*, b.name AS backend FROM replicas r"
        " JOIN object_versions v ON v.id = r.version_pk JOIN buckets k ON k.id = v.bucket_id"
        " JOIN backends b ON b.id = r.backend_id"
        " WHERE k.name = $1 AND v.key = $2 AND v.is_latest ORDER BY b.name, r.part_number",
        bucket,
        key,
    )


async def test_corrupt_shared_replica_is_never_served_and_repaired_for_both(
    cluster: Federation, heal: HealingContext, s3: Any, bucket_name: str
) -> None:
    since = await db_now(heal)
    data = os.urandom(3 * MIB - 11)
    s3.put_object(Bucket=bucket_name, Key="src", Body=data)
    await wait_for_async(lambda: is_full(heal, bucket_name, "src"), 20, "source replicas ok")
    s3.copy_object(Bucket=bucket_name, Key="dst", CopySource=f"{bucket_name}/src")
    src_rows, dst_rows = (
        await _rows(heal, bucket_name, "src"),
        await _rows(heal, bucket_name, "dst"),
    )
    assert {(r["backend"], r["locator"]) for r in src_rows} == {
        (r["backend"], r["locator"]) for r in dst_rows
    }

    shared = next(r for r in src_rows if r["backend"] == "b0" and r["part_number"] == 1)
    tampered = bytearray(data[MIB : 2 * MIB])
    tampered[4242] ^= 0x80
    cluster.backend_s3(0).put_object(Bucket="store-b0", Key=shared["locator"], Body=bytes(tampered))

    # The scrubber finds it through the source's row...
    await age_verification(heal, shared["version_pk"])
    report = await Scrubber(
        heal, batch=len(src_rows), bytes_per_s=0, listing_interval_s=0
    ).run_once()
    assert report["corrupt"] >= 1, report
    # ...and neither version ever serves the altered bytes (the copy's reads check its own
    # row's SHA-256, which is the same).
    for _ in range(6):
        assert s3.get_object(Bucket=bucket_name, Key="dst")["Body"].read() == data
        assert s3.get_object(Bucket=bucket_name, Key="src")["Body"].read() == data

    async def both_full() -> bool:
        return await is_full(heal, bucket_name, "src") and await is_full(heal, bucket_name, "dst")

    await heal_until(heal, both_full, bucket=bucket_name, since=since, scrub=True)
    stored = backend_bytes(cluster, "b0", shared["locator"], {})
    assert stored == data[MIB : 2 * MIB]  # repaired in place: still one shared object
    after_src = {(r["backend"], r["locator"]) for r in await _rows(heal, bucket_name, "src")}
    after_dst = {(r["backend"], r["locator"]) for r in await _rows(heal, bucket_name, "dst")}
    assert after_src == after_dst


async def test_orphan_audit_and_gc_keep_objects_a_copy_still_names(
    cluster: Federation, heal: HealingContext, s3: Any, bucket_name: str
) -> None:
    data = os.urandom(2 * MIB + 3)
    s3.put_object(Bucket=bucket_name, Key="src", Body=data)
    await wait_for_async(lambda: is_full(heal, bucket_name, "src"), 20, "source replicas ok")
    s3.copy_object(Bucket=bucket_name, Key="dst", CopySource=f"{bucket_name}/src")
    rows = await _rows(heal, bucket_name, "dst")
    s3.delete_object(Bucket=bucket_name, Key="src")
    # Orphan audit with no grace period, then garbage collection: nothing the copy names goes.
    await Vacuumer(heal, grace_s=0).run_once()
    await Vacuumer(heal, grace_s=0).run_once()
    for r in rows:
        assert backend_bytes(cluster, r["backend"], r["locator"], {})
    assert s3.get_object(Bucket=bucket_name, Key="dst")["Body"].read() == data
    leftover = await sql(
        heal,
        "SELECT count(*) AS n FROM garbage WHERE locator = ANY($1::text[])",
        [r["locator"] for r in rows],
    )
    assert leftover[0]["n"] == 0


async def test_copy_of_an_object_with_a_pending_replica_shares_it_and_both_heal(
    cluster: Federation, heal: HealingContext, s3: Any, bucket_name: str
) -> None:
    """A backend is down during the PUT: the source commits with a pending replica and a
    replicate job. A copy made now shares every piece (the pending one too, with its own job);
    once the backend is back both versions are complete, still sharing one set of objects."""
    since = await db_now(heal)
    cluster.motos[2].kill()
    try:
        cluster.ping_backends()
        data = os.urandom(2 * MIB + 99)
        s3.put_object(Bucket=bucket_name, Key="src", Body=data)
        s3.copy_object(Bucket=bucket_name, Key="dst", CopySource=f"{bucket_name}/src")
        src, dst = await _rows(heal, bucket_name, "src"), await _rows(heal, bucket_name, "dst")
        assert {(r["backend"], r["locator"]) for r in src} == {
            (r["backend"], r["locator"]) for r in dst
        }
        assert {r["status"] for r in dst if r["backend"] == "b2"} == {"pending"}
        jobs = await sql(
            heal,
            "SELECT count(*) AS n FROM jobs WHERE kind = 'replicate' AND status = 'queued'"
            " AND (payload->>'version_pk')::bigint = $1",
            dst[0]["version_pk"],
        )
        assert jobs[0]["n"] == 1
        assert s3.get_object(Bucket=bucket_name, Key="dst")["Body"].read() == data
    finally:
        cluster.restart_moto(2)

    async def both_full() -> bool:
        return await is_full(heal, bucket_name, "src") and await is_full(heal, bucket_name, "dst")

    await heal_until(heal, both_full, bucket=bucket_name, since=since)
    src, dst = await _rows(heal, bucket_name, "src"), await _rows(heal, bucket_name, "dst")
    assert {(r["backend"], r["locator"]) for r in src} == {
        (r["backend"], r["locator"]) for r in dst
    }
    for r in dst:
        assert backend_bytes(cluster, r["backend"], r["locator"], {})
    assert s3.get_object(Bucket=bucket_name, Key="dst")["Body"].read() == data
