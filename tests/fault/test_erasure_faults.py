"""Erasure-coded objects (ColdArchiveClass: the original design's 2-of-6, k=2 data + 4 parity
shards on 6 distinct backends, acknowledged at 4) under faults: real moto processes killed and
shards altered on the backends. An acknowledged object stays readable with up to four backends
gone and fails cleanly (503) with five; a corrupt shard is caught by its checksum, marked,
repaired-queued (with its shard index) and read around; a PUT with two backends down stores
four shards and queues the other two; with three down it is refused."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.test_policy_placement import Fleet, extra_backends, placed, with_class
from tests.integration.test_s3_api import error_of
from tests.support.cluster import Federation

pytestmark = pytest.mark.fault

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def fleet(cluster: Federation) -> Iterator[Fleet]:
    specs = [
        ("ec3", "eu-north", "SE", "EU"),
        ("ec4", "ap-south", "IN", "IN"),
        ("ec5", "us-west", "US", "US"),
    ]
    with extra_backends(cluster, specs) as motos:
        yield Fleet(cluster, motos)


@pytest.fixture
def s3(cluster: Federation, fleet: Fleet, bucket_name: str) -> Iterator[Any]:
    _, key, secret = cluster.create_tenant(allow_plaintext=True)
    client = with_class(cluster.s3(key, secret), "ColdArchiveClass")
    client.create_bucket(Bucket=bucket_name)
    # Every backend seen healthy first: a backend whose first ping failed (a loaded machine)
    # would be skipped at placement and its shards left to agents this federation does not run.
    cluster.wait_for(
        lambda: all(r["healthy"] for r in cluster.ping_backends().values()),
        what="all six backends to answer a ping",
    )
    yield client
    fleet.revive()


def shard_rows(cluster: Federation, bucket: str, key: str) -> list[dict[str, Any]]:
    return sorted(cluster.replicas(bucket, key), key=lambda r: (r["part_number"], r["shard_index"]))


def settled(cluster: Federation, bucket: str, key: str) -> None:
    cluster.wait_for(
        lambda: {r["status"] for r in cluster.replicas(bucket, key)} == {"ok"},
        what="every shard of the object to be stored",
    )


def holder(rows: list[dict[str, Any]], shard: int) -> str:
    return str(next(r["backend"] for r in rows if r["shard_index"] == shard))


def jobs(cluster: Federation, bucket: str, kind: str) -> list[dict[str, Any]]:
    rows = cluster.sql(
        "SELECT j.payload, j.status FROM jobs j JOIN object_versions v"
        " ON v.id = (j.payload->>'version_pk')::bigint JOIN buckets b ON b.id = v.bucket_id"
        " WHERE b.name = $1 AND j.kind = $2 ORDER BY j.id",
        bucket,
        kind,
    )
    for r in rows:
        if isinstance(r["payload"], str):
            r["payload"] = json.loads(r["payload"])
    return rows


def test_survives_four_stopped_backends_and_fails_cleanly_with_five(
    cluster: Federation, fleet: Fleet, s3: Any, bucket_name: str
) -> None:
    data = os.urandom(2 * MIB + 12345)
    s3.put_object(Bucket=bucket_name, Key="obj", Body=data)
    settled(cluster, bucket_name, "obj")  # acknowledged at 4 shards; the others follow
    rows = shard_rows(cluster, bucket_name, "obj")
    assert len(rows) == 18
    # Both data shards' backends and two parity ones gone: every part decodes from the last
    # two parity shards.
    fleet.kill(holder(rows, 0), holder(rows, 1), holder(rows, 2), holder(rows, 4))
    assert s3.get_object(Bucket=bucket_name, Key="obj")["Body"].read() == data  # not noticed
    cluster.ping_backends()
    assert s3.get_object(Bucket=bucket_name, Key="obj")["Body"].read() == data  # noticed
    ranged = s3.get_object(Bucket=bucket_name, Key="obj", Range="bytes=1048570-1048590")
    assert ranged["Body"].read() == data[1048570:1048591]
    # A fifth backend gone: 1 of the 2 shards needed. A clean error, never wrong bytes.
    fleet.kill(holder(rows, 5))
    for _ in range(2):
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket=bucket_name, Key="obj")
        assert error_of(exc) == (503, "ServiceUnavailable")
        cluster.ping_backends()
    # Unreachable is not corrupt: no shard was marked, nothing to repair.
    assert {r["status"] for r in shard_rows(cluster, bucket_name, "obj")} == {"ok"}
    assert jobs(cluster, bucket_name, "repair") == []


def test_corrupt_shard_is_caught_marked_repaired_and_read_around(
    cluster: Federation, fleet: Fleet, s3: Any, bucket_name: str
) -> None:
    data = os.urandom(MIB + 999)
    s3.put_object(Bucket=bucket_name, Key="obj", Body=data)
    settled(cluster, bucket_name, "obj")
    rows = shard_rows(cluster, bucket_name, "obj")
    victim = next(r for r in rows if r["part_number"] == 1 and r["shard_index"] == 1)
    original = fleet.read(victim["backend"], victim["locator"])
    fleet.write(victim["backend"], victim["locator"], bytes(b ^ 0xFF for b in original))
    # A read needs only 2 of the 6 shards and prefers them by RTT, so which two it fetches
    # depends on the machine. Rows still `pending` come after `ok` ones: the parity shards of
    # part 1 shown pending for this read make the data shards (the victim among them) its
    # first choice, and the parity shards what it falls through to.
    parity = [r["id"] for r in rows if r["part_number"] == 1 and r["shard_index"] >= 2]
    cluster.sql("UPDATE replicas SET status = 'pending' WHERE id = ANY($1::bigint[])", parity)
    assert s3.get_object(Bucket=bucket_name, Key="obj")["Body"].read() == data
    cluster.sql("UPDATE replicas SET status = 'ok' WHERE id = ANY($1::bigint[])", parity)
    after = {
        (r["part_number"], r["shard_index"]): r["status"]
        for r in shard_rows(cluster, bucket_name, "obj")
    }
    assert after.pop((1, 1)) == "corrupt"
    assert set(after.values()) == {"ok"}
    (repair,) = jobs(cluster, bucket_name, "repair")
    assert repair["status"] == "queued"
    assert repair["payload"]["shard_index"] == 1 and repair["payload"]["part_number"] == 1
    assert repair["payload"]["reason"] == "corrupt"
    # The corrupt shard is not tried again; the object still reads with three more losses.
    fleet.kill(holder(rows, 0), holder(rows, 2), holder(rows, 3))
    cluster.ping_backends()
    assert s3.get_object(Bucket=bucket_name, Key="obj")["Body"].read() == data


def test_put_with_two_backends_down_stores_four_shards_and_queues_the_others(
    cluster: Federation, fleet: Fleet, s3: Any, bucket_name: str
) -> None:
    fleet.kill("ec4", "ec5")
    cluster.ping_backends()
    data = os.urandom(2 * MIB + 1)
    s3.put_object(Bucket=bucket_name, Key="obj", Body=data)
    status = placed(cluster, bucket_name, "obj")
    assert status.pop("ec4") == status.pop("ec5") == "pending"
    assert set(status.values()) == {"ok"}
    rows = shard_rows(cluster, bucket_name, "obj")
    queued = jobs(cluster, bucket_name, "replicate")
    assert {j["status"] for j in queued} == {"queued"}
    assert sorted(j["payload"]["shard_index"] for j in queued) == sorted(
        {r["shard_index"] for r in rows if r["backend"] in ("ec4", "ec5")}
    )
    assert all(j["payload"]["erasure"] == {"k": 2, "m": 4} for j in queued)
    assert s3.get_object(Bucket=bucket_name, Key="obj")["Body"].read() == data


@pytest.mark.parametrize("known_down", [True, False], ids=["detected", "undetected"])
def test_put_with_three_backends_down_is_refused_and_invisible(
    cluster: Federation, fleet: Fleet, s3: Any, bucket_name: str, known_down: bool
) -> None:
    fleet.kill("ec3", "b1", "ec5")
    if known_down:
        cluster.ping_backends()
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket_name, Key="lost", Body=os.urandom(2 * MIB))
    assert error_of(exc) == (503, "ServiceUnavailable")
    assert s3.list_objects_v2(Bucket=bucket_name)["KeyCount"] == 0
