"""Multipart uploads under faults: a backend (a real moto process) dies between parts or in
the middle of one, and the upload still completes with pending replicas and their replication
jobs and reads back byte for byte; a client that never completes leaves nothing visible, and
Abort or expiry removes every piece from every backend, also from a backend that was down when
the upload was aborted (its garbage waits for it)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from actors.garbage import collect_garbage
from actors.healing import HealingContext
from jobs.upload_expirer import UploadExpirer
from tests.integration.test_multipart import (
    MIB,
    PART,
    backend_listing,
    complete,
    expected_etag,
    stored,
    upload,
    upload_pieces,
    version_row,
    wait_gone,
)
from tests.integration.test_s3_api import error_of
from tests.support.cluster import Federation

pytestmark = pytest.mark.fault


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


def backend_ids(cluster: Federation) -> dict[str, int]:
    return {r["name"]: r["id"] for r in cluster.sql("SELECT id, name FROM backends")}


def replicate_jobs(cluster: Federation, version_pk: int) -> list[dict[str, Any]]:
    return cluster.sql(
        "SELECT status, (payload->>'target_backend_id')::bigint AS target FROM jobs"
        " WHERE kind = 'replicate' AND (payload->>'version_pk')::bigint = $1",
        version_pk,
    )


def run_collection(cluster: Federation) -> None:
    async def collect() -> None:
        ctx = await HealingContext.connect(cluster.settings, use_ray=False)
        try:
            for _ in range(20):
                resolved, _ = await collect_garbage(ctx.store, ctx.registry)
                if resolved == 0:
                    return
        finally:
            await ctx.close()

    asyncio.run(collect())


@pytest.mark.parametrize("known_down", [True, False], ids=["detected", "undetected"])
def test_backend_killed_between_parts(
    cluster: Federation, s3: Any, bucket_name: str, known_down: bool
) -> None:
    key = "between"
    first = os.urandom(PART)
    upload_id, listed = upload(s3, bucket_name, key, [first])
    cluster.motos[2].kill()
    if known_down:
        cluster.ping_backends()
    rest = [os.urandom(PART), os.urandom(MIB + 3)]
    for number, data in enumerate(rest, start=2):
        etag = s3.upload_part(
            Bucket=bucket_name, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )["ETag"]
        listed.append({"PartNumber": number, "ETag": etag})
    done = complete(s3, bucket_name, key, upload_id, listed)
    parts = [first, *rest]
    assert done["ETag"] == expected_etag(parts)
    b2 = backend_ids(cluster)["b2"]
    rows = cluster.replicas(bucket_name, key)
    # Parts 2 and 3 (stored parts 5..11) never reached b2: pending there, ok elsewhere.
    assert {r["status"] for r in rows if r["backend_id"] == b2 and r["part_number"] >= 5} == {
        "pending"
    }
    assert {r["status"] for r in rows if r["backend_id"] != b2 and r["part_number"] >= 5} == {"ok"}
    jobs = replicate_jobs(cluster, version_row(cluster, bucket_name, key)["id"])
    assert b2 in {j["target"] for j in jobs}
    assert all(j["status"] in ("queued", "leased") for j in jobs if j["target"] == b2)
    data = b"".join(parts)
    assert s3.get_object(Bucket=bucket_name, Key=key)["Body"].read() == data
    ranged = s3.get_object(Bucket=bucket_name, Key=key, Range=f"bytes={PART - 5}-{PART + 5}")
    assert ranged["Body"].read() == data[PART - 5 : PART + 6]


def test_backend_killed_during_a_part(cluster: Federation, s3: Any, bucket_name: str) -> None:
    key = "during"
    data = os.urandom(24 * MIB)
    upload_id = s3.create_multipart_upload(Bucket=bucket_name, Key=key)["UploadId"]
    before = backend_listing(cluster, 1)
    killed = threading.Event()

    def kill_when_writing() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if len(backend_listing(cluster, 1) - before) >= 2:
                cluster.motos[1].kill()
                killed.set()
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_when_writing)
    killer.start()
    etag = s3.upload_part(Bucket=bucket_name, Key=key, UploadId=upload_id, PartNumber=1, Body=data)[
        "ETag"
    ]
    killer.join()
    assert killed.is_set(), "the backend was not killed while the part was written"
    tail = os.urandom(1000)
    tail_etag = s3.upload_part(
        Bucket=bucket_name, Key=key, UploadId=upload_id, PartNumber=2, Body=tail
    )["ETag"]
    complete(
        s3,
        bucket_name,
        key,
        upload_id,
        [{"PartNumber": 1, "ETag": etag}, {"PartNumber": 2, "ETag": tail_etag}],
    )
    b1 = backend_ids(cluster)["b1"]
    rows = cluster.replicas(bucket_name, key)
    assert {r["status"] for r in rows if r["backend_id"] != b1} == {"ok"}
    # b1 died mid-part: its pieces are pending (never "ok" with chunks missing), and pending
    # always comes with its replication job.
    b1_status = {r["status"] for r in rows if r["backend_id"] == b1}
    assert "pending" in b1_status
    jobs = replicate_jobs(cluster, version_row(cluster, bucket_name, key)["id"])
    assert [j["status"] in ("queued", "leased") for j in jobs if j["target"] == b1] == [True]
    assert s3.get_object(Bucket=bucket_name, Key=key)["Body"].read() == data + tail


@pytest.mark.parametrize("how", ["abort", "expiry"])
def test_unfinished_upload_is_invisible_and_every_piece_is_collected(
    cluster: Federation, s3: Any, bucket_name: str, how: str
) -> None:
    key = f"unfinished-{how}"
    upload_id, _ = upload(s3, bucket_name, key, [os.urandom(PART), os.urandom(2 * MIB)])
    pieces = upload_pieces(cluster, upload_id)
    assert len(pieces) == 3 * 7 and stored(cluster, pieces) == pieces
    # The client "crashes": it never completes. Nothing is visible.
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket_name, Key=key)
    assert error_of(exc)[0] == 404
    assert s3.list_objects_v2(Bucket=bucket_name)["KeyCount"] == 0
    # A backend is down when the upload goes: its pieces wait in garbage until it is back.
    cluster.motos[1].kill()
    cluster.ping_backends()
    b1 = backend_ids(cluster)["b1"]
    if how == "abort":
        s3.abort_multipart_upload(Bucket=bucket_name, Key=key, UploadId=upload_id)
    else:

        async def expire() -> dict[str, Any]:
            ctx = await HealingContext.connect(cluster.settings, use_ray=False)
            try:
                return await UploadExpirer(ctx, expiry_s=0.0).run_once()
            finally:
                await ctx.close()

        report = asyncio.run(expire())
        assert report["aborted"] >= 1
    assert upload_pieces(cluster, upload_id) == set()
    up = {p for p in pieces if p[0] != b1}
    wait_gone(cluster, up, "pieces on the live backends deleted")
    waiting = cluster.sql(
        "SELECT backend_id, locator FROM garbage WHERE backend_id = $1 AND locator = ANY($2)",
        b1,
        [loc for b, loc in pieces if b == b1],
    )
    assert len(waiting) == len(pieces - up)
    # Back (moto restarts empty, which a real backend would not): the garbage is resolved.
    cluster.restart_moto(1)
    cluster.wait_for(
        # b1 only: earlier tests of the shared federation leave backends of their own
        # (stopped or removed) behind.
        lambda: all(
            r["healthy"] for r in cluster.sql("SELECT healthy FROM backends WHERE id = $1", b1)
        ),
        what="b1 healthy again",
    )
    run_collection(cluster)
    left = cluster.sql(
        "SELECT 1 FROM garbage WHERE backend_id = $1 AND locator = ANY($2)",
        b1,
        [loc for b, loc in pieces if b == b1],
    )
    assert left == []
    assert stored(cluster, pieces) == set()
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=bucket_name, Key=key, UploadId=upload_id)
    assert error_of(exc) == (404, "NoSuchUpload")


_fleets = iter(range(1000))


@pytest.fixture
def fleet(cluster: Federation) -> Iterator[Any]:
    """Three more backends for one test (fresh names each time: a removed backend keeps its
    name)."""
    from tests.integration.test_policy_placement import Fleet, extra_backends

    n = next(_fleets)
    specs = [
        (f"mp{n}a", "eu-north", "SE", "EU"),
        (f"mp{n}b", "ap-south", "IN", "IN"),
        (f"mp{n}c", "us-west", "US", "US"),
    ]
    with extra_backends(cluster, specs) as motos:
        fleet = Fleet(cluster, motos)
        try:
            yield fleet
        finally:
            fleet.revive()


def test_erasure_coded_multipart_upload(
    cluster: Federation, fleet: Any, s3: Any, bucket_name: str
) -> None:
    """ColdArchiveClass (2 + 4 shards on six backends): every chunk of every part is coded,
    its ``parts`` row written at Complete, and the object reads back with four backends
    gone."""
    key = "coded"
    parts = [os.urandom(PART), os.urandom(MIB + 5)]
    upload_id, listed = upload(s3, bucket_name, key, parts, StorageClass="ColdArchiveClass")
    complete(s3, bucket_name, key, upload_id, listed)
    data = b"".join(parts)
    row = version_row(cluster, bucket_name, key)
    assert row["redundancy_class"] == "ColdArchiveClass"
    layout = cluster.sql(
        "SELECT part_number, size, k, m FROM parts WHERE version_pk = $1 ORDER BY part_number",
        row["id"],
    )
    assert [(p["part_number"], p["size"], p["k"], p["m"]) for p in layout] == [
        (i, size, 2, 4) for i, size in enumerate([MIB] * 6 + [5])
    ]
    shards = cluster.replicas(bucket_name, key)
    assert len(shards) == 7 * 6
    assert {(r["part_number"], r["shard_index"]) for r in shards} == {
        (p, i) for p in range(7) for i in range(6)
    }
    assert s3.get_object(Bucket=bucket_name, Key=key)["Body"].read() == data
    holders = sorted({r["backend"] for r in shards if r["shard_index"] in (0, 1, 2, 3)})
    assert len(holders) == 4  # shard i of every part is on one backend
    fleet.kill(*holders)
    cluster.ping_backends()
    assert s3.get_object(Bucket=bucket_name, Key=key)["Body"].read() == data
    ranged = s3.get_object(Bucket=bucket_name, Key=key, Range=f"bytes={PART - 9}-{PART + 9}")
    assert ranged["Body"].read() == data[PART - 9 : PART + 10]


def test_parts_stay_on_the_first_parts_backends_when_one_goes_down(
    cluster: Federation, fleet: Any, s3: Any, bucket_name: str
) -> None:
    """Six backends, three copies: part 1 picks three. One of them dies before part 2; part 2
    still goes to the same three (the dead one pending, the quorum of two met) instead of a
    fresh placement, so every backend of the object holds every chunk and repair sees one
    backend set."""
    key = "pinned"
    first = os.urandom(PART)
    created = s3.create_multipart_upload(Bucket=bucket_name, Key=key)
    upload_id = created["UploadId"]
    etag1 = s3.upload_part(
        Bucket=bucket_name, Key=key, UploadId=upload_id, PartNumber=1, Body=first
    )["ETag"]
    holders = sorted(
        cluster.sql(
            "SELECT DISTINCT b.name FROM upload_pieces p JOIN uploads u ON u.id = p.upload_pk"
            " JOIN backends b ON b.id = p.backend_id WHERE u.upload_id = $1",
            upload_id,
        ),
        key=lambda r: r["name"],
    )
    names = [r["name"] for r in holders]
    assert len(names) == 3
    fleet.kill(names[0])
    cluster.ping_backends()
    second = os.urandom(MIB + 3)
    etag2 = s3.upload_part(
        Bucket=bucket_name, Key=key, UploadId=upload_id, PartNumber=2, Body=second
    )["ETag"]
    complete(
        s3,
        bucket_name,
        key,
        upload_id,
        [{"PartNumber": 1, "ETag": etag1}, {"PartNumber": 2, "ETag": etag2}],
    )
    rows = cluster.replicas(bucket_name, key)
    by_backend: dict[str, set[int]] = {}
    for r in rows:
        by_backend.setdefault(r["backend"], set()).add(r["part_number"])
    chunks = {r["part_number"] for r in rows}
    assert len(chunks) == 5 + 2  # 1 MiB chunks in tests: part 1 is 5, part 2 (1 MiB + 3) is 2
    assert sorted(by_backend) == names
    assert all(parts == chunks for parts in by_backend.values())
    dead = {r["part_number"]: r["status"] for r in rows if r["backend"] == names[0]}
    assert dead == {**dict.fromkeys(range(5), "ok"), 5: "pending", 6: "pending"}
    assert s3.get_object(Bucket=bucket_name, Key=key)["Body"].read() == first + second
