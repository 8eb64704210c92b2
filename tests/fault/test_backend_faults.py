"""Invariants 3 and 4 under faults: real moto server processes are killed or have their bytes
altered, and every acknowledged write stays readable with the right bytes, every refused
write stays invisible, and every bad replica is marked with its repair queued."""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.test_s3_api import error_of
from tests.support.cluster import BACKENDS, Federation

pytestmark = pytest.mark.fault

MIB = 1024 * 1024


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


def backend_keys(cluster: Federation, index: int) -> set[str]:
    listing = cluster.backend_s3(index).list_objects_v2(Bucket=cluster.backend_bucket(index))
    return {o["Key"] for o in listing.get("Contents", [])}


def jobs_for(cluster: Federation, bucket: str, key: str, kind: str) -> list[dict[str, Any]]:
    return cluster.sql(
        "SELECT j.* FROM jobs j JOIN object_versions v ON v.id = (j.payload->>'version_pk')::bigint"
        " JOIN buckets b ON b.id = v.bucket_id WHERE b.name = $1 AND v.key = $2 AND j.kind = $3",
        bucket,
        key,
        kind,
    )


@pytest.mark.parametrize("known_down", [True, False], ids=["detected", "undetected"])
def test_put_with_one_backend_down_is_acknowledged_with_a_pending_replica(
    cluster: Federation, s3: Any, bucket_name: str, known_down: bool
) -> None:
    cluster.motos[2].kill()
    if known_down:
        cluster.ping_backends()
    data = os.urandom(2 * MIB + 123)
    s3.put_object(Bucket=bucket_name, Key="k", Body=data)
    rows = cluster.replicas(bucket_name, "k")
    status = {(r["backend"], r["part_number"]): r["status"] for r in rows}
    assert {s for (b, _), s in status.items() if b == "b2"} == {"pending"}
    assert {s for (b, _), s in status.items() if b != "b2"} == {"ok"}
    jobs = jobs_for(cluster, bucket_name, "k", "replicate")
    assert [j["status"] for j in jobs] == ["queued"]
    assert s3.get_object(Bucket=bucket_name, Key="k")["Body"].read() == data


def test_backend_killed_during_a_put(cluster: Federation, s3: Any, bucket_name: str) -> None:
    data = os.urandom(24 * MIB)
    before = backend_keys(cluster, 1)
    killed = threading.Event()

    def kill_when_writing() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if len(backend_keys(cluster, 1) - before) >= 2:
                cluster.motos[1].kill()
                killed.set()
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_when_writing)
    killer.start()
    s3.put_object(Bucket=bucket_name, Key="big", Body=data)
    killer.join()
    assert killed.is_set(), "the backend was not killed while the PUT was writing"
    rows = cluster.replicas(bucket_name, "big")
    assert {r["status"] for r in rows if r["backend"] != "b1"} == {"ok"}
    # b1 died mid-write: unless its last parts landed before the kill took effect, its replica
    # is committed pending with a replication job (never "ok" with parts missing).
    b1_status = {r["status"] for r in rows if r["backend"] == "b1"}
    assert b1_status in ({"pending"}, {"ok"})
    if b1_status == {"pending"}:
        jobs = jobs_for(cluster, bucket_name, "big", "replicate")
        assert [j["status"] in ("queued", "leased") for j in jobs] == [True]
    assert s3.get_object(Bucket=bucket_name, Key="big")["Body"].read() == data


@pytest.mark.parametrize("known_down", [True, False], ids=["detected", "undetected"])
def test_put_without_quorum_is_refused_and_invisible(
    cluster: Federation, s3: Any, bucket_name: str, known_down: bool
) -> None:
    before = backend_keys(cluster, 0)
    cluster.motos[1].kill()
    cluster.motos[2].kill()
    if known_down:
        cluster.ping_backends()
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket_name, Key="lost", Body=os.urandom(3 * MIB))
    assert error_of(exc) == (503, "ServiceUnavailable")
    assert "b1" not in exc.value.response["Error"]["Message"]  # topology stays private
    assert s3.list_objects_v2(Bucket=bucket_name)["KeyCount"] == 0
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket_name, Key="lost")
    assert (
        cluster.sql(
            "SELECT 1 FROM object_versions v JOIN buckets b ON b.id = v.bucket_id"
            " WHERE b.name = $1",
            bucket_name,
        )
        == []
    )
    # What reached the surviving backend is garbage, deleted soon after.
    cluster.wait_for(lambda: backend_keys(cluster, 0) == before, what="orphaned parts deleted")
    cluster.wait_for(
        lambda: (
            cluster.sql(
                "SELECT 1 FROM garbage"
                " WHERE backend_id = (SELECT id FROM backends WHERE name = 'b0')"
            )
            == []
        ),
        what="garbage rows resolved",
    )


def test_altered_replica_is_never_served_and_is_marked_corrupt(
    cluster: Federation, s3: Any, bucket_name: str
) -> None:
    data = os.urandom(3 * MIB)
    s3.put_object(Bucket=bucket_name, Key="victim", Body=data)
    cluster.wait_for(
        lambda: {r["status"] for r in cluster.replicas(bucket_name, "victim")} == {"ok"},
        what="every replica acknowledged: "
        + repr(
            [
                (r["backend"], r["part_number"], r["status"])
                for r in cluster.replicas(bucket_name, "victim")
            ]
        ),
    )
    rows = [r for r in cluster.replicas(bucket_name, "victim") if r["part_number"] == 1]
    altered = {}
    for row in rows:
        if row["backend"] == "b2":
            continue  # one intact copy remains
        index = int(row["backend"][1:])
        tampered = bytearray(data[MIB : 2 * MIB])
        tampered[12345] ^= 0xFF
        cluster.backend_s3(index).put_object(
            Bucket=cluster.backend_bucket(index), Key=row["locator"], Body=bytes(tampered)
        )
        altered[row["id"]] = row["backend"]
    # Reads spread over replicas of similar RTT, so within a few reads each altered copy is
    # tried; every read must still return the right bytes.
    for _ in range(40):
        got = s3.get_object(Bucket=bucket_name, Key="victim", Range=f"bytes={MIB}-{MIB + 99}")
        assert got["Body"].read() == data[MIB : MIB + 100]
        marked = cluster.sql(
            "SELECT id FROM replicas WHERE id = ANY($1::bigint[]) AND status = 'corrupt'",
            list(altered),
        )
        if len(marked) == len(altered):
            break
    else:
        pytest.fail("altered replicas were not all detected")
    assert s3.get_object(Bucket=bucket_name, Key="victim")["Body"].read() == data
    repairs = jobs_for(cluster, bucket_name, "victim", "repair")
    assert sorted(json.loads(j["payload"])["backend_id"] for j in repairs) == sorted(
        r["backend_id"] for r in rows if r["id"] in altered
    )


def test_a_frozen_backend_holds_no_read_up_to_its_timeout(
    cluster: Federation, s3: Any, bucket_name: str
) -> None:  # the s3 fixture's teardown thaws every backend
    """A backend that stops answering (SIGSTOP: the overloaded provider) but still accepts
    connections is overtaken by hedged reads: every GET answers with the right bytes while
    the backend's reads would hang until the gateway's backend timeout (5 s here). The client
    gives up after 3.5 s, so a read that waited for that timeout fails this test."""
    _, key_id, secret = cluster.create_tenant(allow_plaintext=True)
    s3 = cluster.s3(key_id, secret)
    bucket_name += "-frozen"
    impatient = cluster.s3(key_id, secret, read_timeout=3.5, connect_timeout=2)
    s3.create_bucket(Bucket=bucket_name)
    objects = {f"o{i}": os.urandom(4096 + i) for i in range(6)}
    for key, body in objects.items():
        s3.put_object(Bucket=bucket_name, Key=key, Body=body)
    cluster.wait_for(
        lambda: all(
            {r["status"] for r in cluster.replicas(bucket_name, k)} == {"ok"} for k in objects
        ),
        what="every replica acknowledged",
    )
    for key, body in objects.items():  # latency samples for the hedge delay
        for _ in range(3):
            assert s3.get_object(Bucket=bucket_name, Key=key)["Body"].read() == body
    cluster.motos[0].freeze()
    try:
        # Reads spread over replicas of similar RTT, so many of these ask b0 first.
        for round_ in range(4):
            for key, body in objects.items():
                got = impatient.get_object(Bucket=bucket_name, Key=key)["Body"].read()
                assert got == body, (round_, key)
    finally:
        cluster.motos[0].thaw()


def test_every_replica_bad_is_an_error_not_wrong_bytes(
    cluster: Federation, s3: Any, bucket_name: str
) -> None:
    s3.put_object(Bucket=bucket_name, Key="doomed", Body=b"original bytes")
    for row in cluster.replicas(bucket_name, "doomed"):
        index = int(row["backend"][1:])
        cluster.backend_s3(index).put_object(
            Bucket=cluster.backend_bucket(index), Key=row["locator"], Body=b"forged bytes!!"
        )
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket_name, Key="doomed")
    assert error_of(exc) == (503, "ServiceUnavailable")
    assert {r["status"] for r in cluster.replicas(bucket_name, "doomed")} == {"corrupt"}


def test_backends_see_only_opaque_names(cluster: Federation, plain_tenant: tuple[str, Any]) -> None:
    tenant_name, s3 = plain_tenant
    s3.create_bucket(Bucket="revealing-bucket-name")
    s3.put_object(
        Bucket="revealing-bucket-name",
        Key="payroll/alice-salary.xlsx",
        Body=b"x" * 10,
        Metadata={"owner": "alice"},
    )
    pattern = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{32}$")
    for index in range(len(BACKENDS)):
        backend = cluster.backend_s3(index)
        for key in backend_keys(cluster, index):
            assert pattern.match(key), key
            for secret in ("revealing", "payroll", "alice", tenant_name):
                assert secret not in key
        for row in cluster.replicas("revealing-bucket-name", "payroll/alice-salary.xlsx"):
            if int(row["backend"][1:]) == index:
                head = backend.head_object(Bucket=cluster.backend_bucket(index), Key=row["locator"])
                assert head["Metadata"] == {}


def test_redis_down_costs_only_speed(
    cluster: Federation, plain_tenant: tuple[str, Any], bucket_name: str
) -> None:
    _, s3 = plain_tenant
    s3.create_bucket(Bucket=bucket_name)
    s3.put_object(Bucket=bucket_name, Key="k", Body=b"v1")
    assert s3.get_object(Bucket=bucket_name, Key="k")["Body"].read() == b"v1"  # cached now
    cluster.redis.kill()
    try:
        s3.put_object(Bucket=bucket_name, Key="k", Body=b"v2")  # invalidation cannot reach Redis
        assert s3.get_object(Bucket=bucket_name, Key="k")["Body"].read() == b"v2"
        s3.put_object(Bucket=bucket_name, Key="k2", Body=b"new")
        assert {o["Key"] for o in s3.list_objects_v2(Bucket=bucket_name)["Contents"]} == {"k", "k2"}
    finally:
        cluster.redis.start()
    # Redis is back, empty; the stale "v1" entry is gone with it, and nothing stale is served.
    time.sleep(5.5)  # the cache's circuit breaker re-closes after 5 s
    assert s3.get_object(Bucket=bucket_name, Key="k")["Body"].read() == b"v2"
    s3.put_object(Bucket=bucket_name, Key="k", Body=b"v3")
    assert s3.get_object(Bucket=bucket_name, Key="k")["Body"].read() == b"v3"


def test_one_request_id_names_the_request_in_every_process_that_logs_it(
    cluster: Federation, s3: Any, bucket_name: str
) -> None:
    """JSON logs with one request id: the gateway replica's line for the request (Serve's
    request id, which is also ``x-amz-request-id``), the backend actor's line for the write it
    could not make, and the replication job queued for the missing copy all carry it."""
    import ray

    cluster.motos[2].kill()  # undetected: the PUT still sends b2 its copy, which fails
    response = s3.put_object(Bucket=bucket_name, Key="traced", Body=b"follow me")
    request_id = response["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
    (job,) = jobs_for(cluster, bucket_name, "traced", "replicate")
    assert json.loads(job["payload"])["request_id"] == request_id
    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"

    def lines_with_id() -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for path in logs.rglob("*"):
            if not path.is_file() or path.suffix not in (".log", ".out", ".err"):
                continue
            for line in path.read_text(errors="replace").splitlines():
                if request_id in line and line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        found.setdefault(path.name, []).append(json.loads(line))
        return found

    deadline = time.monotonic() + 30  # log files are flushed by their processes
    found: dict[str, list[dict[str, Any]]] = {}
    while time.monotonic() < deadline:
        found = lines_with_id()
        replica = [r for name, rows in found.items() if name.startswith("replica_") for r in rows]
        actor = [r for rows in found.values() for r in rows if "put failed" in r.get("message", "")]
        if replica and actor:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"request {request_id} not in both logs: {sorted(found)}")
    assert all(r["request_id"] == request_id for r in replica + actor)
    assert "b2" in actor[0]["message"]
